//! Reading one definition file and collecting everything wrong with it.

use std::io;
use std::path::Path;

use eventflow_engine::{ActionRegistry, Definition, Format, Problem, parse_definition, validate};

/// How files are read: from disk in the binary, from memory in tests.
pub(crate) type ReadFile = dyn Fn(&Path) -> io::Result<Vec<u8>>;

pub(crate) fn read_from_disk(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path)
}

/// What became of a file.
#[derive(Debug)]
pub(crate) enum Loaded {
    Valid(Box<Definition>),
    /// Every problem found, each with its JSON path (`$` for the document itself).
    Invalid(Vec<Problem>),
    /// The file could not be read at all.
    Unreadable(io::Error),
}

/// Reads, parses and validates the definition at `path`.
pub(crate) fn load(path: &Path, read: &ReadFile, actions: &ActionRegistry) -> Loaded {
    let bytes = match read(path) {
        Ok(bytes) => bytes,
        Err(e) => return Loaded::Unreadable(e),
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            return Loaded::Invalid(vec![Problem {
                path: "$".into(),
                message: format!(
                    "the file is not UTF-8 text (byte {} is not valid); save it as UTF-8",
                    e.utf8_error().valid_up_to()
                ),
            }]);
        }
    };
    let format = Format::from_path(&path.to_string_lossy());
    let definition = match parse_definition(&text, format) {
        Ok(d) => d,
        Err(e) => {
            return Loaded::Invalid(vec![Problem {
                path: e.path,
                message: e.message,
            }]);
        }
    };
    let problems = validate(&definition, actions);
    if problems.is_empty() {
        Loaded::Valid(Box::new(definition))
    } else {
        Loaded::Invalid(problems)
    }
}

/// The line saying a file could not be read: which file, the OS error, what to do.
pub(crate) fn unreadable_message(path: &Path, error: &io::Error) -> String {
    let advice = match error.kind() {
        io::ErrorKind::NotFound => {
            "check the file name; a relative path starts at the current directory"
        }
        io::ErrorKind::PermissionDenied => "check that you are allowed to read it",
        io::ErrorKind::IsADirectory => "name a definition file, not a directory",
        _ => "check the path and that the file can be read",
    };
    format!(
        "{}: cannot read the file: {error}; {advice}",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(text: &'static [u8]) -> impl Fn(&Path) -> io::Result<Vec<u8>> {
        move |_| Ok(text.to_vec())
    }

    fn load_text(name: &str, text: &'static [u8]) -> Loaded {
        load(Path::new(name), &from(text), &eventflow_actions::registry())
    }

    #[test]
    fn a_good_definition_loads() {
        let loaded = load_text(
            "w.json",
            br#"{"id":"w","name":"W","kind":"custom","steps":[{"id":"a","action":"notify"}]}"#,
        );
        assert!(matches!(loaded, Loaded::Valid(d) if d.steps.len() == 1));
    }

    #[test]
    fn yaml_is_read_by_its_extension() {
        let text = b"id: w\nname: W\nkind: custom\nsteps:\n  - id: a\n    action: notify\n";
        assert!(matches!(load_text("w.yml", text), Loaded::Valid(_)));
        // The same text read as JSON is refused, with the document's path.
        match load_text("w.json", text) {
            Loaded::Invalid(p) => assert_eq!(p[0].path, "$"),
            other => panic!("expected a problem, got {other:?}"),
        }
    }

    #[test]
    fn a_parse_error_keeps_the_path_of_the_field() {
        let loaded = load_text(
            "w.json",
            br#"{"id":"w","name":"W","kind":"custom","steps":[{"id":"a","action":"notify","retry":{"max_attempts":"x"}}]}"#,
        );
        match loaded {
            Loaded::Invalid(p) => assert_eq!(p[0].path, "$.steps[0].retry.max_attempts"),
            other => panic!("expected a problem, got {other:?}"),
        }
    }

    #[test]
    fn every_validation_problem_is_returned() {
        let loaded = load_text(
            "w.json",
            br#"{"id":"w","name":"W","kind":"custom","steps":[
                {"id":"a","action":"notify","depends_on":["ghost"]},
                {"id":"b","action":"page.publish"}]}"#,
        );
        match loaded {
            Loaded::Invalid(p) => {
                let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
                assert!(paths.contains(&"$.steps[0].depends_on[0]"), "{paths:?}");
                assert!(paths.contains(&"$.steps[1].action"), "{paths:?}");
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_a_problem_not_a_panic() {
        match load_text("w.json", b"{\"id\": \"\xff\"}") {
            Loaded::Invalid(p) => assert!(p[0].message.contains("UTF-8"), "{}", p[0].message),
            other => panic!("expected a problem, got {other:?}"),
        }
    }

    #[test]
    fn an_unreadable_file_says_which_and_what_to_do() {
        let missing = |_: &Path| -> io::Result<Vec<u8>> { Err(io::ErrorKind::NotFound.into()) };
        let loaded = load(
            Path::new("nope.json"),
            &missing,
            &eventflow_actions::registry(),
        );
        let Loaded::Unreadable(e) = loaded else {
            panic!("expected unreadable");
        };
        let msg = unreadable_message(Path::new("nope.json"), &e);
        assert!(
            msg.starts_with("nope.json: cannot read the file: "),
            "{msg}"
        );
        assert!(msg.contains("check the file name"), "{msg}");
    }
}
