//! A Mermaid flowchart of a definition: steps, dependencies, conditions, fan-outs, loops,
//! waits and compensation edges.

use std::fmt::Write;

use crate::model::{Compensate, Definition, Step};

/// Draws `def` as a Mermaid `flowchart TD`.
pub fn mermaid(def: &Definition) -> String {
    let mut out = String::from("flowchart TD\n");
    for step in &def.steps {
        let _ = writeln!(out, "    {}{}", node_id(&step.id), node(step));
    }
    for step in &def.steps {
        for dep in &step.depends_on {
            let members: Vec<&Step> = def
                .steps
                .iter()
                .filter(|s| s.parallel_group.as_deref() == Some(dep.as_str()) && s.id != step.id)
                .collect();
            let sources: Vec<&str> = if def.steps.iter().any(|s| &s.id == dep) {
                vec![dep.as_str()]
            } else {
                members.iter().map(|s| s.id.as_str()).collect()
            };
            for src in sources {
                match &step.when {
                    Some(w) => {
                        let _ = writeln!(
                            out,
                            "    {} -->|\"when {}\"| {}",
                            node_id(src),
                            escape(w),
                            node_id(&step.id)
                        );
                    }
                    None => {
                        let _ = writeln!(out, "    {} --> {}", node_id(src), node_id(&step.id));
                    }
                }
            }
        }
        if let Some(l) = &step.repeat {
            let delay = l.delay.map(|d| format!(", every {d}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "    {id} -->|\"loop until {} (max {}{delay})\"| {id}",
                escape(&l.until),
                l.max_iterations,
                id = node_id(&step.id)
            );
        }
        if let Some(c) = &step.compensate {
            let action = match c {
                Compensate::Builtin(false) => continue,
                Compensate::Builtin(true) => {
                    format!("undo {}", step.action.as_deref().unwrap_or(""))
                }
                Compensate::Spec(s) => match &s.action {
                    Some(a) => a.clone(),
                    None => format!("undo {}", step.action.as_deref().unwrap_or("")),
                },
            };
            let comp = format!("{}__undo", node_id(&step.id));
            let _ = writeln!(out, "    {comp}[/\"{}\"/]", escape(&action));
            let _ = writeln!(out, "    {} -.->|compensate| {comp}", node_id(&step.id));
        }
    }
    let groups = {
        let mut g: Vec<&str> = def
            .steps
            .iter()
            .filter_map(|s| s.parallel_group.as_deref())
            .collect();
        g.sort_unstable();
        g.dedup();
        g
    };
    for group in groups {
        let _ = writeln!(
            out,
            "    subgraph {} [\"parallel: {}\"]",
            node_id(group),
            escape(group)
        );
        for s in def
            .steps
            .iter()
            .filter(|s| s.parallel_group.as_deref() == Some(group))
        {
            let _ = writeln!(out, "        {}", node_id(&s.id));
        }
        out.push_str("    end\n");
    }
    out
}

fn node(step: &Step) -> String {
    let mut lines = vec![format!("<b>{}</b>", escape(&step.id))];
    if let Some(a) = &step.action {
        lines.push(escape(a));
    }
    if let Some(w) = &step.wait {
        let what = match (&w.duration, &w.until) {
            (Some(d), _) => format!("wait {d}"),
            (None, Some(u)) => {
                let mut s = format!("wait until {}", escape(u));
                if let Some(o) = w.offset {
                    let _ = write!(s, " {o}");
                }
                if let Some(at) = &w.at {
                    let _ = write!(s, " at {at}");
                }
                if let Some(tz) = &w.time_zone {
                    let _ = write!(s, " {}", escape(tz));
                }
                s
            }
            (None, None) => "wait".into(),
        };
        lines.push(what);
    }
    if let Some(fe) = &step.for_each {
        lines.push(format!(
            "for each {} (x{})",
            escape(&fe.items),
            fe.concurrency
        ));
    }
    let label = lines.join("<br/>");
    match (&step.for_each, &step.action) {
        (Some(_), _) => format!("[[\"{label}\"]]"),
        (None, None) => format!("([\"{label}\"])"),
        _ => format!("[\"{label}\"]"),
    }
}

/// Mermaid reserves some words (`end`, `graph`, ...): every node id gets a prefix.
fn node_id(id: &str) -> String {
    format!("s_{}", id.replace('-', "_"))
}

fn escape(text: &str) -> String {
    text.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Format, parse_definition};

    #[test]
    fn draws_dependencies_conditions_loops_and_compensations() {
        let def = parse_definition(
            r#"{"id":"g","name":"g","kind":"custom","steps":[
                {"id":"a","action":"records.put","compensate":true},
                {"id":"b","action":"email.send","depends_on":["a"],"when":"input.x > 1"},
                {"id":"c","action":"http.request","depends_on":["a"],"loop":{"until":"true","max_iterations":3}},
                {"id":"d","action":"notify","for_each":{"items":"input.l"},"depends_on":["b","c"]}
            ]}"#,
            Format::Json,
        )
        .expect("parses");
        let g = mermaid(&def);
        assert!(g.starts_with("flowchart TD\n"));
        assert!(g.contains("s_a --> s_c"), "{g}");
        assert!(g.contains("s_a -->|\"when input.x #gt; 1\"| s_b"), "{g}");
        assert!(
            g.contains("s_c -->|\"loop until true (max 3)\"| s_c"),
            "{g}"
        );
        assert!(g.contains("s_a -.->|compensate| s_a__undo"), "{g}");
        assert!(g.contains("s_d[[\""), "{g}");
    }
}
