//! What a command has to say, and the exit status it ends with.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;

/// How a command went; a worse status wins when several files are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) enum Status {
    #[default]
    Ok,
    /// A definition has problems.
    Invalid,
    /// A file could not be read, or the output could not be written.
    Io,
}

impl Status {
    pub(crate) fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Invalid => 1,
            Status::Io => 2,
        }
    }

    pub(crate) fn exit_code(self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Out,
    Err,
}

/// Lines for stdout and stderr, kept in the order they were said, and the status.
#[derive(Debug, Default)]
pub(crate) struct Report {
    lines: Vec<(Stream, String)>,
    status: Status,
}

impl Report {
    pub(crate) fn out(&mut self, line: impl Into<String>) {
        self.lines.push((Stream::Out, line.into()));
    }

    pub(crate) fn err(&mut self, line: impl Into<String>) {
        self.lines.push((Stream::Err, line.into()));
    }

    /// Records a status; the worst one recorded is the command's.
    pub(crate) fn fail(&mut self, status: Status) {
        self.status = self.status.max(status);
    }

    pub(crate) fn status(&self) -> Status {
        self.status
    }

    pub(crate) fn lines(&self) -> &[(Stream, String)] {
        &self.lines
    }

    #[cfg(test)]
    pub(crate) fn text(&self, stream: Stream) -> String {
        self.lines
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    }
}

/// Writes the report's lines. A reader that closed stdout early (`eventflow schema | head`)
/// is not an error: the rest of stdout is dropped, stderr is still written.
pub(crate) fn write(
    report: &Report,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut out_open = true;
    for (stream, line) in report.lines() {
        match stream {
            Stream::Out if out_open => match writeln!(out, "{line}") {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => out_open = false,
                other => other.context("cannot write to standard output")?,
            },
            Stream::Out => {}
            Stream::Err => writeln!(err, "{line}").context("cannot write to standard error")?,
        }
    }
    if out_open {
        match out.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            other => other.context("cannot write to standard output")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn the_worst_status_wins() {
        let mut r = Report::default();
        assert_eq!(r.status(), Status::Ok);
        r.fail(Status::Io);
        r.fail(Status::Invalid);
        assert_eq!(r.status(), Status::Io);
        assert_eq!(r.status().code(), 2);
    }

    #[test]
    fn lines_go_to_their_stream_in_order() {
        let mut r = Report::default();
        r.out("a: ok");
        r.err("b: $.id: bad");
        r.out("c: ok");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        write(&r, &mut out, &mut err).expect("writes");
        assert_eq!(String::from_utf8_lossy(&out), "a: ok\nc: ok\n");
        assert_eq!(String::from_utf8_lossy(&err), "b: $.id: bad\n");
    }

    #[test]
    fn a_closed_stdout_is_not_an_error_and_stderr_still_gets_written() {
        let mut r = Report::default();
        r.out("a: ok");
        r.err("b: $.id: bad");
        let mut err = Vec::new();
        write(&r, &mut Closed, &mut err).expect("a closed pipe is fine");
        assert_eq!(String::from_utf8_lossy(&err), "b: $.id: bad\n");
    }
}
