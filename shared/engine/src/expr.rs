//! Expressions: CEL (the `cel` crate) over a run's data, with bounds on cost and size.
//!
//! An expression sees `input`, `steps.<id>.output` / `steps.<id>.status`, `item` and `index`
//! (in a `for_each`), `iteration` (in a `loop`), `result` (in `output` shaping) and `now`.
//! Compiling records which of those it reads, so that validation can check step references and
//! evaluation binds only the parts of the data an expression can reach (a 50,000-attendee input
//! is not converted for every item).
//!
//! Bounds: the source is at most [`MAX_SOURCE_BYTES`], the parsed tree at most
//! [`MAX_NODES`] nodes and [`MAX_DEPTH`] deep, a comprehension (`map`, `filter`, `all`, ...)
//! may not nest inside another (so the work is linear in the data), and a result is at most
//! [`MAX_RESULT_BYTES`]. CEL itself has no loops, assignments or IO.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr, LiteralValue};
use cel::{Context, Env};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

pub const MAX_SOURCE_BYTES: usize = 4096;
pub const MAX_NODES: usize = 1000;
pub const MAX_DEPTH: u16 = 32;
pub const MAX_COMPREHENSION_NESTING: u32 = 1;
pub const MAX_RESULT_BYTES: usize = 8 * 1024 * 1024;

/// The variables an expression may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Var {
    Input,
    Item,
    Index,
    Iteration,
    Result,
    Now,
    /// A finished run's output, in a workflow dependency's `when` and `input`.
    Output,
    /// The event record, in an event-relative trigger's `input`.
    Event,
}

impl Var {
    pub fn name(self) -> &'static str {
        match self {
            Var::Input => "input",
            Var::Item => "item",
            Var::Index => "index",
            Var::Iteration => "iteration",
            Var::Result => "result",
            Var::Now => "now",
            Var::Output => "output",
            Var::Event => "event",
        }
    }

    fn from_name(name: &str) -> Option<Var> {
        Some(match name {
            "input" => Var::Input,
            "item" => Var::Item,
            "index" => Var::Index,
            "iteration" => Var::Iteration,
            "result" => Var::Result,
            "now" => Var::Now,
            "output" => Var::Output,
            "event" => Var::Event,
            _ => return None,
        })
    }
}

/// Which parts of the data an expression reads: for each root, the field paths it selects
/// (an empty path means the whole value).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reads {
    pub vars: BTreeMap<Var, Vec<Vec<String>>>,
    pub steps: BTreeMap<String, Vec<Vec<String>>>,
    /// Names that are neither a variable nor bound by a comprehension.
    pub unknown: Vec<String>,
    /// `steps` used other than as `steps.<id>`.
    pub dynamic_steps: bool,
}

/// Why an expression was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    #[error("`{expr}` does not parse as CEL: {message}")]
    Parse { expr: String, message: String },
    #[error("`{expr}` is too costly: {message}")]
    Limit { expr: String, message: String },
    #[error("`{expr}` failed: {message}")]
    Eval { expr: String, message: String },
}

/// A compiled CEL expression.
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    ast: Arc<IdedExpr>,
    reads: Reads,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

impl Expr {
    pub fn compile(source: &str) -> Result<Expr, ExprError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(ExprError::Limit {
                expr: abbreviate(source),
                message: format!(
                    "it is {} bytes long, the limit is {MAX_SOURCE_BYTES}",
                    source.len()
                ),
            });
        }
        // The generated parser recurses per bracket before its own depth check runs.
        if bracket_depth(source) > usize::from(MAX_DEPTH) {
            return Err(ExprError::Limit {
                expr: abbreviate(source),
                message: format!("it nests brackets more than {MAX_DEPTH} deep"),
            });
        }
        let ast = env()
            .parser()
            .max_recursion_depth(MAX_DEPTH)
            .parse(source)
            .map_err(|e| ExprError::Parse {
                expr: source.to_owned(),
                message: e.to_string().lines().next().unwrap_or("").trim().to_owned(),
            })?;
        let mut walk = Walk::default();
        walk.visit(&ast, 0);
        let limit = |message: String| ExprError::Limit {
            expr: source.to_owned(),
            message,
        };
        if walk.nodes > MAX_NODES {
            return Err(limit(format!(
                "it has {} nodes, the limit is {MAX_NODES}",
                walk.nodes
            )));
        }
        if walk.max_nesting > MAX_COMPREHENSION_NESTING {
            return Err(limit(
                "a comprehension (map, filter, all, exists) nests inside another; \
                 split it into steps"
                    .into(),
            ));
        }
        Ok(Expr {
            source: source.to_owned(),
            ast: Arc::new(ast),
            reads: walk.reads,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// Evaluates over `scope`, returning JSON.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, ExprError> {
        let value = self.eval_cel(scope)?;
        let mut budget = MAX_RESULT_BYTES;
        if !within(&value, &mut budget) {
            return Err(self.error(format!(
                "its result is larger than {MAX_RESULT_BYTES} bytes"
            )));
        }
        to_json(&value).map_err(|m| self.error(m))
    }

    /// Evaluates a condition: it must give a boolean.
    pub fn eval_bool(&self, scope: &Scope<'_>) -> Result<bool, ExprError> {
        match self.eval_cel(scope)? {
            cel::Value::Bool(b) => Ok(b),
            other => Err(self.error(format!(
                "a condition must be true or false, this gave {}",
                type_name(&other)
            ))),
        }
    }

    fn eval_cel(&self, scope: &Scope<'_>) -> Result<cel::Value, ExprError> {
        let mut ctx = Context::with_env(Arc::clone(env()));
        for (var, paths) in &self.reads.vars {
            let value = match var {
                Var::Input => Some(to_cel(&prune(scope.input, paths))),
                Var::Item => scope.item.map(|v| to_cel(&prune(v, paths))),
                Var::Result => scope.result.map(|v| to_cel(&prune(v, paths))),
                Var::Index => scope.index.map(|i| cel::Value::Int(i64::from(i))),
                Var::Iteration => scope.iteration.map(|i| cel::Value::Int(i64::from(i))),
                Var::Now => Some(cel::Value::Timestamp(scope.now.fixed_offset())),
                Var::Output => scope.output.map(|v| to_cel(&prune(v, paths))),
                Var::Event => scope.event.map(|v| to_cel(&prune(v, paths))),
            };
            if let Some(value) = value {
                ctx.add_variable_from_value(var.name(), value);
            }
        }
        if !self.reads.steps.is_empty() {
            let mut steps = HashMap::with_capacity(self.reads.steps.len());
            for (id, paths) in &self.reads.steps {
                if let Some(view) = scope.steps.view(id) {
                    steps.insert(id.clone(), to_cel(&prune(&view, paths)));
                }
            }
            ctx.add_variable_from_value("steps", steps);
        }
        cel::Value::resolve(&self.ast, &ctx).map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, message: String) -> ExprError {
        ExprError::Eval {
            expr: self.source.clone(),
            message,
        }
    }
}

/// Gives an expression the state of the run's steps: `{"status": ..., "output": ...}`, the
/// output absent when the step has none (skipped, not yet run).
pub trait StepView {
    fn view(&self, id: &str) -> Option<Value>;
}

/// No steps: for expressions evaluated before a run exists.
#[derive(Debug)]
pub struct NoSteps;

impl StepView for NoSteps {
    fn view(&self, _: &str) -> Option<Value> {
        None
    }
}

/// What an expression is evaluated over.
pub struct Scope<'a> {
    pub input: &'a Value,
    pub steps: &'a dyn StepView,
    pub item: Option<&'a Value>,
    pub index: Option<u32>,
    pub iteration: Option<u32>,
    pub result: Option<&'a Value>,
    /// A finished run's output (workflow dependencies only).
    pub output: Option<&'a Value>,
    /// The event record (event-relative triggers only).
    pub event: Option<&'a Value>,
    pub now: DateTime<Utc>,
}

impl std::fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("index", &self.index)
            .field("iteration", &self.iteration)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl<'a> Scope<'a> {
    pub fn new(input: &'a Value, steps: &'a dyn StepView, now: DateTime<Utc>) -> Self {
        Scope {
            input,
            steps,
            item: None,
            index: None,
            iteration: None,
            result: None,
            output: None,
            event: None,
            now,
        }
    }
}

/// A JSON value in which strings written `${ <CEL> }` are expressions.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// No expression inside: used as is.
    Literal(Value),
    Expr(Box<Expr>),
    Array(Vec<Template>),
    Object(Vec<(String, Template)>),
}

/// A problem found compiling a template: where inside it (a JSON path suffix) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    pub path: String,
    pub error: String,
}

impl Template {
    pub fn compile(value: &Value) -> Result<Template, Vec<TemplateError>> {
        let mut errors = Vec::new();
        let template = compile_template(value, String::new(), &mut errors);
        if errors.is_empty() {
            Ok(template)
        } else {
            Err(errors)
        }
    }

    pub fn eval(&self, scope: &Scope<'_>) -> Result<Value, ExprError> {
        match self {
            Template::Literal(v) => Ok(v.clone()),
            Template::Expr(e) => e.eval(scope),
            Template::Array(items) => items
                .iter()
                .map(|t| t.eval(scope))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Template::Object(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (k, t) in fields {
                    map.insert(k.clone(), t.eval(scope)?);
                }
                Ok(Value::Object(map))
            }
        }
    }

    /// Every expression inside, with the JSON path suffix where it stands.
    pub fn exprs(&self) -> Vec<(String, &Expr)> {
        let mut out = Vec::new();
        self.collect(String::new(), &mut out);
        out
    }

    fn collect<'t>(&'t self, path: String, out: &mut Vec<(String, &'t Expr)>) {
        match self {
            Template::Literal(_) => {}
            Template::Expr(e) => out.push((path, e)),
            Template::Array(items) => {
                for (i, t) in items.iter().enumerate() {
                    t.collect(format!("{path}[{i}]"), out);
                }
            }
            Template::Object(fields) => {
                for (k, t) in fields {
                    t.collect(format!("{path}.{k}"), out);
                }
            }
        }
    }
}

/// What a template string is: an expression, or a literal (with `$${` unescaped).
#[derive(Debug)]
pub enum TemplateString<'s> {
    Expr(&'s str),
    Literal(String),
    /// `${` inside a longer string, which is not how expressions are written.
    Embedded,
}

pub fn classify(s: &str) -> TemplateString<'_> {
    let trimmed = s.trim();
    if let Some(inner) = trimmed
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
    {
        return TemplateString::Expr(inner);
    }
    let unescaped = s.replace("$${", "\u{0}");
    if unescaped.contains("${") {
        return TemplateString::Embedded;
    }
    TemplateString::Literal(unescaped.replace('\u{0}', "${"))
}

fn compile_template(value: &Value, path: String, errors: &mut Vec<TemplateError>) -> Template {
    if !has_template_strings(value) {
        return Template::Literal(value.clone());
    }
    match value {
        Value::String(s) => match classify(s) {
            TemplateString::Expr(src) => match Expr::compile(src) {
                Ok(e) => Template::Expr(Box::new(e)),
                Err(e) => {
                    errors.push(TemplateError {
                        path,
                        error: e.to_string(),
                    });
                    Template::Literal(Value::Null)
                }
            },
            TemplateString::Literal(l) => Template::Literal(Value::String(l)),
            TemplateString::Embedded => {
                errors.push(TemplateError {
                    path,
                    error: format!(
                        "`{}` has `${{` inside a longer string; an expression must be the whole \
                         string, so build text in CEL, e.g. \"${{'Hello ' + input.name}}\" \
                         (write `$${{` for a literal `${{`)",
                        abbreviate(s)
                    ),
                });
                Template::Literal(Value::Null)
            }
        },
        Value::Array(items) => Template::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| compile_template(v, format!("{path}[{i}]"), errors))
                .collect(),
        ),
        Value::Object(map) => Template::Object(
            map.iter()
                .map(|(k, v)| {
                    let t = compile_template(v, format!("{path}.{k}"), errors);
                    (k.clone(), t)
                })
                .collect(),
        ),
        other => Template::Literal(other.clone()),
    }
}

fn has_template_strings(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains("${"),
        Value::Array(items) => items.iter().any(has_template_strings),
        Value::Object(map) => map.values().any(has_template_strings),
        _ => false,
    }
}

#[derive(Default)]
struct Walk {
    reads: Reads,
    bound: Vec<String>,
    nodes: usize,
    max_nesting: u32,
}

impl Walk {
    fn visit(&mut self, e: &IdedExpr, nesting: u32) {
        self.nodes += 1;
        self.max_nesting = self.max_nesting.max(nesting);
        match &e.expr {
            Ast::Ident(name) => self.root(name, Vec::new()),
            Ast::Select(select) => {
                if let Some((root, path)) = chain(e) {
                    self.root(root, path);
                } else {
                    self.visit(&select.operand, nesting);
                }
            }
            Ast::Call(call) => {
                if let Some(id) = steps_index(call) {
                    self.step(id.to_owned(), Vec::new());
                    return;
                }
                if let Some(target) = &call.target {
                    self.visit(target, nesting);
                }
                for arg in &call.args {
                    self.visit(arg, nesting);
                }
            }
            Ast::Comprehension(c) => {
                self.visit(&c.iter_range, nesting);
                self.visit(&c.accu_init, nesting);
                let before = self.bound.len();
                self.bound.push(c.iter_var.clone());
                if let Some(v2) = &c.iter_var2 {
                    self.bound.push(v2.clone());
                }
                self.bound.push(c.accu_var.clone());
                for part in [&c.loop_cond, &c.loop_step, &c.result] {
                    self.visit(part, nesting + 1);
                }
                self.bound.truncate(before);
            }
            Ast::List(list) => {
                for el in &list.elements {
                    self.visit(el, nesting);
                }
            }
            Ast::Map(map) => self.entries(&map.entries, nesting),
            Ast::Struct(s) => self.entries(&s.entries, nesting),
            Ast::Literal(_) | Ast::Unspecified => {}
        }
    }

    fn entries(&mut self, entries: &[cel::common::ast::IdedEntryExpr], nesting: u32) {
        for entry in entries {
            match &entry.expr {
                EntryExpr::MapEntry(m) => {
                    self.visit(&m.key, nesting);
                    self.visit(&m.value, nesting);
                }
                EntryExpr::StructField(f) => self.visit(&f.value, nesting),
            }
        }
    }

    fn root(&mut self, name: &str, path: Vec<String>) {
        if self.bound.iter().any(|b| b == name) {
            return;
        }
        if name == "steps" {
            let mut path = path.into_iter();
            match path.next() {
                Some(id) => self.step(id, path.collect()),
                None => self.reads.dynamic_steps = true,
            }
            return;
        }
        match Var::from_name(name) {
            Some(var) => self.reads.vars.entry(var).or_default().push(path),
            None => {
                if !self.reads.unknown.iter().any(|u| u == name) {
                    self.reads.unknown.push(name.to_owned());
                }
            }
        }
    }

    fn step(&mut self, id: String, path: Vec<String>) {
        self.reads.steps.entry(id).or_default().push(path);
    }
}

/// `a.b.c` as (`a`, [`b`, `c`]); `None` when the chain does not start at a name.
fn chain(e: &IdedExpr) -> Option<(&str, Vec<String>)> {
    let mut fields = Vec::new();
    let mut cur = e;
    loop {
        match &cur.expr {
            Ast::Ident(name) => {
                fields.reverse();
                return Some((name, fields));
            }
            Ast::Select(s) => {
                fields.push(s.field.clone());
                cur = &s.operand;
            }
            _ => return None,
        }
    }
}

/// `steps['id']` with a literal id.
fn steps_index(call: &cel::common::ast::CallExpr) -> Option<&str> {
    if call.func_name != "_[_]" || call.target.is_some() || call.args.len() != 2 {
        return None;
    }
    match (&call.args[0].expr, &call.args[1].expr) {
        (Ast::Ident(root), Ast::Literal(LiteralValue::String(id))) if root == "steps" => {
            Some(id.inner())
        }
        _ => None,
    }
}

/// Keeps only the paths an expression can reach; a path absent from `value` stays absent, so
/// `has()` and missing-key errors behave as on the whole value.
fn prune(value: &Value, paths: &[Vec<String>]) -> Value {
    if paths.iter().any(Vec::is_empty) || !value.is_object() {
        return value.clone();
    }
    let mut out = Value::Object(Map::new());
    for path in paths {
        copy_path(value, &mut out, path);
    }
    out
}

fn copy_path(src: &Value, dst: &mut Value, path: &[String]) {
    let (Some((head, rest)), Value::Object(src_map), Value::Object(dst_map)) =
        (path.split_first(), src, dst)
    else {
        return;
    };
    let Some(child) = src_map.get(head) else {
        return;
    };
    if rest.is_empty() || !child.is_object() {
        dst_map.insert(head.clone(), child.clone());
        return;
    }
    let slot = dst_map
        .entry(head.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    copy_path(child, slot, rest);
}

pub fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::from(s.as_str()),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let m: HashMap<String, cel::Value> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(m)
        }
    }
}

fn to_json(value: &cel::Value) -> Result<Value, String> {
    value
        .json()
        .map_err(|e| format!("its result cannot be written as JSON: {e:?}"))
}

/// Whether `value` fits in `budget` bytes (roughly its JSON size); stops early when not.
fn within(value: &cel::Value, budget: &mut usize) -> bool {
    let cost = match value {
        cel::Value::String(s) => s.len() + 2,
        cel::Value::Bytes(b) => b.len() * 4 / 3 + 2,
        cel::Value::List(items) => {
            *budget = match budget.checked_sub(2) {
                Some(b) => b,
                None => return false,
            };
            return items.iter().all(|v| within(v, budget));
        }
        cel::Value::Map(map) => {
            *budget = match budget.checked_sub(2) {
                Some(b) => b,
                None => return false,
            };
            return map.map.iter().all(|(k, v)| {
                match budget.checked_sub(k.to_string().len() + 4) {
                    Some(b) => *budget = b,
                    None => return false,
                }
                within(v, budget)
            });
        }
        _ => 8,
    };
    match budget.checked_sub(cost) {
        Some(b) => {
            *budget = b;
            true
        }
        None => false,
    }
}

fn type_name(v: &cel::Value) -> &'static str {
    match v {
        cel::Value::List(_) => "a list",
        cel::Value::Map(_) => "a map",
        cel::Value::Int(_) | cel::Value::UInt(_) => "an integer",
        cel::Value::Float(_) => "a number",
        cel::Value::String(_) => "a string",
        cel::Value::Bytes(_) => "bytes",
        cel::Value::Bool(_) => "a boolean",
        cel::Value::Null => "null",
        cel::Value::Timestamp(_) => "a timestamp",
        cel::Value::Duration(_) => "a duration",
        _ => "a value of another type",
    }
}

/// The deepest nesting of (), [] and {} outside string literals.
fn bracket_depth(source: &str) -> usize {
    let (mut depth, mut max, mut quote, mut escaped) = (0usize, 0usize, None, false);
    for c in source.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn abbreviate(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_owned();
    }
    let cut = (0..=77).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    format!("{}...", &s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    struct Steps(Value);
    impl StepView for Steps {
        fn view(&self, id: &str) -> Option<Value> {
            self.0.get(id).cloned()
        }
    }

    #[test]
    fn records_what_an_expression_reads() {
        let e = Expr::compile(
            "input.event.name + steps.publish.output.url + string(size(input.sponsors.filter(s, s.gold)))",
        )
        .expect("compiles");
        let reads = e.reads();
        assert_eq!(
            reads.vars[&Var::Input],
            vec![
                vec!["event".to_owned(), "name".to_owned()],
                vec!["sponsors".to_owned()]
            ]
        );
        assert_eq!(
            reads.steps["publish"],
            vec![vec!["output".to_owned(), "url".to_owned()]]
        );
        assert!(reads.unknown.is_empty(), "{:?}", reads.unknown);
    }

    #[test]
    fn names_unknown_variables_and_dynamic_step_access() {
        let e = Expr::compile("foo.bar && steps[x] == 1").expect("compiles");
        assert_eq!(e.reads().unknown, vec!["foo".to_owned(), "x".to_owned()]);
        assert!(e.reads().dynamic_steps);
        let e = Expr::compile("steps['b'].output").expect("compiles");
        assert!(e.reads().steps.contains_key("b"));
    }

    #[test]
    fn evaluates_over_pruned_data_with_the_same_answers() {
        let input = json!({"event": {"name": "RustConf", "city": "Berlin"}, "n": 3});
        let steps = Steps(json!({"a": {"status": "succeeded", "output": {"url": "u"}}}));
        let scope = Scope::new(&input, &steps, now());
        let e = Expr::compile("input.event.name + '@' + steps.a.output.url").expect("compiles");
        assert_eq!(e.eval(&scope).expect("eval"), json!("RustConf@u"));
        let e = Expr::compile("has(input.event.city) && !has(input.event.venue) && input.n > 2")
            .expect("compiles");
        assert!(e.eval_bool(&scope).expect("eval"));
        let e = Expr::compile("input.event.venue").expect("compiles");
        assert!(matches!(e.eval(&scope), Err(ExprError::Eval { .. })));
    }

    #[test]
    fn conditions_must_be_booleans() {
        let input = json!({});
        let scope = Scope::new(&input, &NoSteps, now());
        let e = Expr::compile("1 + 1").expect("compiles");
        let err = e.eval_bool(&scope).expect_err("not a bool");
        assert!(err.to_string().contains("true or false"), "{err}");
    }

    #[test]
    fn refuses_costly_expressions() {
        let nested = "input.a.map(x, input.b.map(y, x + y))";
        assert!(matches!(
            Expr::compile(nested),
            Err(ExprError::Limit { .. })
        ));
        let long = "1 + ".repeat(2000) + "1";
        assert!(matches!(Expr::compile(&long), Err(ExprError::Limit { .. })));
        let deep = "(".repeat(200) + "1" + &")".repeat(200);
        assert!(Expr::compile(&deep).is_err());
    }

    #[test]
    fn bounds_the_size_of_a_result() {
        let big: Vec<Value> = (0..20_000)
            .map(|i| json!("x".repeat(500) + &i.to_string()))
            .collect();
        let input = json!({"l": big});
        let scope = Scope::new(&input, &NoSteps, now());
        let e = Expr::compile("input.l + input.l").expect("compiles");
        let err = e.eval(&scope).expect_err("too big");
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn templates_keep_literals_and_evaluate_expressions() {
        let t = Template::compile(&json!({
            "to": "${item.email}",
            "subject": "${'Welcome to ' + input.event}",
            "price": "$${not an expression}",
            "tags": ["a", "${index}"]
        }))
        .expect("compiles");
        let input = json!({"event": "RustConf"});
        let item = json!({"email": "a@example.org"});
        let scope = Scope {
            item: Some(&item),
            index: Some(4),
            ..Scope::new(&input, &NoSteps, now())
        };
        assert_eq!(
            t.eval(&scope).expect("eval"),
            json!({"to": "a@example.org", "subject": "Welcome to RustConf",
                   "price": "${not an expression}", "tags": ["a", 4]})
        );
    }

    #[test]
    fn an_embedded_expression_is_refused_with_advice() {
        let errs = Template::compile(&json!({"subject": "Hello ${input.name}"})).expect_err("bad");
        assert_eq!(errs[0].path, ".subject");
        assert!(errs[0].error.contains("whole string"), "{}", errs[0].error);
    }
}
