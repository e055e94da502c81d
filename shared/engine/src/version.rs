//! Validation, and the compiled form of a definition that the engine runs.
//!
//! [`Version::compile`] checks a [`Definition`] against an [`ActionRegistry`] and, when it finds
//! nothing wrong, returns a [`Version`]: the definition with its expressions parsed, its
//! dependencies resolved to indices and its graph ordered. Every problem is collected, each
//! with the JSON path of the offending field and a sentence saying what to do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use chrono::NaiveTime;
use chrono_tz::Tz;
use serde_json::Value;

use crate::duration::{Duration, Offset};
use crate::expr::{Expr, ExprError, NoSteps, Scope, Template, TemplateString, Var, classify};
use crate::model::{
    Compensate, Definition, Dependency, DependencyKind, FailurePolicy, LoopExhausted, RetryPolicy,
    Step, Trigger,
};

pub const MAX_STEPS: usize = 500;
pub const MAX_DEFINITION_BYTES: usize = 256 * 1024;
pub const MAX_NESTING: usize = 32;
pub const MAX_CONCURRENCY: u32 = 1000;
pub const MAX_ITERATIONS: u32 = 10_000;
pub const MAX_ATTEMPTS: u32 = 100;
/// The longest duration anywhere in a definition: ten years.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 86_400);

/// What an action declares about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSpec {
    pub name: String,
    /// Whether the action can undo itself (`compensate: true`).
    pub compensable: bool,
    pub summary: String,
}

/// The actions a host offers; validation refuses any other.
#[derive(Debug, Clone, Default)]
pub struct ActionRegistry {
    specs: BTreeMap<String, ActionSpec>,
}

impl ActionRegistry {
    pub fn new(specs: impl IntoIterator<Item = ActionSpec>) -> Self {
        ActionRegistry {
            specs: specs.into_iter().map(|s| (s.name.clone(), s)).collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&ActionSpec> {
        self.specs.get(name)
    }

    pub fn specs(&self) -> impl Iterator<Item = &ActionSpec> {
        self.specs.values()
    }
}

/// One thing wrong with a definition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// JSON path of the offending field, e.g. `$.steps[2].depends_on[0]`.
    pub path: String,
    pub message: String,
}

impl Problem {
    /// Every problem, one a line.
    pub fn join(problems: &[Problem]) -> String {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The failure policy of a step, with its target resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Rollback,
    RollbackTo(usize),
    Continue,
    Pause,
}

#[derive(Debug, Clone)]
pub struct CompiledForEach {
    pub items: Expr,
    pub concurrency: u32,
    pub tolerated_failure: f64,
}

#[derive(Debug, Clone)]
pub struct CompiledLoop {
    pub until: Expr,
    pub max_iterations: u32,
    pub delay: Option<Duration>,
    pub on_exhausted: LoopExhausted,
}

#[derive(Debug, Clone)]
pub enum TimeZone {
    Fixed(Tz),
    Expr(Expr),
}

#[derive(Debug, Clone)]
pub enum CompiledWait {
    For(Duration),
    Until {
        instant: Box<Expr>,
        offset: Option<Offset>,
        at: Option<NaiveTime>,
        time_zone: TimeZone,
    },
}

#[derive(Debug, Clone)]
pub struct CompiledCompensation {
    pub action: String,
    /// The action's own compensation (true) or another action run forward (false).
    pub builtin: bool,
    pub input: Option<Template>,
    pub retry: RetryPolicy,
}

/// A step ready to run.
#[derive(Debug, Clone)]
pub struct CompiledStep {
    pub id: String,
    pub action: Option<String>,
    pub deps: Vec<usize>,
    pub when: Option<Expr>,
    pub input: Template,
    pub output: Option<Template>,
    pub for_each: Option<CompiledForEach>,
    pub repeat: Option<CompiledLoop>,
    pub wait: Option<CompiledWait>,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub compensation: Option<CompiledCompensation>,
    pub on_failure: Policy,
}

/// A workflow dependency ready to evaluate (see [`Dependency`]).
#[derive(Debug, Clone)]
pub struct CompiledDependency {
    /// The workflow depended on.
    pub workflow: String,
    pub kind: DependencyKind,
    pub when: Option<Expr>,
    pub input: Option<Template>,
}

/// `now` is not readable in dependency expressions; scopes still need one.
fn no_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::<chrono::Utc>::UNIX_EPOCH
}

impl CompiledDependency {
    /// Whether a finished run of the depended-on workflow, with this input and output, starts
    /// a run of the declaring one (always true without `when`).
    pub fn holds(&self, input: &Value, output: Option<&Value>) -> Result<bool, ExprError> {
        let Some(when) = &self.when else {
            return Ok(true);
        };
        let scope = Scope {
            output,
            ..Scope::new(input, &NoSteps, no_now())
        };
        when.eval_bool(&scope)
    }

    /// The input of the dependent run: the template over the upstream run's input and
    /// output, or the upstream input itself.
    pub fn input_for(&self, input: &Value, output: Option<&Value>) -> Result<Value, ExprError> {
        let Some(template) = &self.input else {
            return Ok(input.clone());
        };
        let scope = Scope {
            output,
            ..Scope::new(input, &NoSteps, no_now())
        };
        template.eval(&scope)
    }
}

/// A compiled, immutable workflow version.
#[derive(Debug, Clone)]
pub struct Version {
    pub workflow_id: String,
    pub number: u32,
    definition: Arc<Definition>,
    steps: Vec<CompiledStep>,
    index: HashMap<String, usize>,
    /// Steps in an order where each comes after all it depends on.
    order: Vec<usize>,
    /// For each step, every step that follows it (transitively), as a bit set.
    descendants: Vec<BitSet>,
    input_schema: Option<Arc<jsonschema::Validator>>,
    correlation_key: Option<Expr>,
    dependencies: Vec<CompiledDependency>,
}

impl Version {
    /// Checks `definition` and compiles it, or returns every problem found.
    pub fn compile(
        definition: Definition,
        number: u32,
        actions: &ActionRegistry,
    ) -> Result<Version, Vec<Problem>> {
        Compiler::new(&definition, actions).run().map(|c| Version {
            workflow_id: definition.id.clone(),
            number,
            steps: c.steps,
            index: c.index,
            order: c.order,
            descendants: c.descendants,
            input_schema: c.input_schema,
            correlation_key: c.correlation_key,
            dependencies: c.dependencies,
            definition: Arc::new(definition),
        })
    }

    pub fn definition(&self) -> &Definition {
        &self.definition
    }

    pub fn steps(&self) -> &[CompiledStep] {
        &self.steps
    }

    /// Step indices, each after every step it depends on.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Whether `later` follows `earlier` in the graph.
    pub fn follows(&self, later: usize, earlier: usize) -> bool {
        self.descendants[earlier].contains(later)
    }

    /// The workflows this one depends on, as declared.
    pub fn dependencies(&self) -> &[CompiledDependency] {
        &self.dependencies
    }

    /// The correlation key of a run on `input` (`None` when the workflow declares none): a
    /// string as it is, a number written out; anything else is refused.
    pub fn correlation_key(&self, input: &Value) -> Result<Option<String>, ExprError> {
        let Some(e) = &self.correlation_key else {
            return Ok(None);
        };
        match e.eval(&Scope::new(input, &NoSteps, no_now()))? {
            Value::String(s) if !s.is_empty() => Ok(Some(s)),
            Value::Number(n) => Ok(Some(n.to_string())),
            other => Err(ExprError::Eval {
                expr: e.source().to_owned(),
                message: format!(
                    "a correlation key must be a non-empty string or a number, this gave {other}"
                ),
            }),
        }
    }

    /// Checks a run's input against the definition's `input_schema`.
    pub fn check_input(&self, input: &Value) -> Result<(), Vec<Problem>> {
        let Some(validator) = &self.input_schema else {
            return Ok(());
        };
        let problems: Vec<Problem> = validator
            .iter_errors(input)
            .map(|e| Problem {
                path: json_pointer_to_path(&e.instance_path().to_string()),
                message: format!("{e}; the workflow's input_schema requires it"),
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Checks `definition` and returns every problem (none when it is valid).
pub fn validate(definition: &Definition, actions: &ActionRegistry) -> Vec<Problem> {
    Compiler::new(definition, actions)
        .run()
        .err()
        .unwrap_or_default()
}

/// A cycle among workflows through their blocking and parallel dependencies, if there is one,
/// as the workflows along it with the first repeated at the end (`a → b → a` is
/// `["a", "b", "a"]`). Such a cycle would start runs forever (parallel) or wait forever
/// (blocking); conditional dependencies do not count, their condition is what ends a loop.
pub fn dependency_cycle<'d>(
    definitions: impl IntoIterator<Item = &'d Definition>,
) -> Option<Vec<String>> {
    // Edges run from the workflow depended on to the one that declares the dependency.
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for def in definitions {
        edges.entry(def.id.as_str()).or_default();
        for dep in &def.dependencies {
            if dep.kind != DependencyKind::Conditional {
                edges
                    .entry(dep.workflow.as_str())
                    .or_default()
                    .push(def.id.as_str());
            }
        }
    }
    let mut done: HashSet<&str> = HashSet::new();
    for &start in edges.keys() {
        if done.contains(start) {
            continue;
        }
        // Depth first with an explicit stack: (node, next edge to follow).
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let targets = edges.get(node).map_or(&[][..], Vec::as_slice);
            let Some(&target) = targets.get(*next) else {
                done.insert(node);
                path.pop();
                continue;
            };
            *next += 1;
            if let Some(at) = path.iter().position(|(n, _)| *n == target) {
                let mut cycle: Vec<String> =
                    path[at..].iter().map(|(n, _)| (*n).to_owned()).collect();
                cycle.push(target.to_owned());
                return Some(cycle);
            }
            if !done.contains(target) {
                path.push((target, 0));
            }
        }
    }
    None
}

fn json_pointer_to_path(pointer: &str) -> String {
    let mut path = String::from("$");
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.parse::<usize>().is_ok() {
            path.push_str(&format!("[{part}]"));
        } else {
            path.push('.');
            path.push_str(&part);
        }
    }
    path
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: usize) -> Self {
        BitSet(vec![0; n.div_ceil(64)])
    }
    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    fn union(&mut self, other: &BitSet) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }
}

struct Compiled {
    steps: Vec<CompiledStep>,
    index: HashMap<String, usize>,
    order: Vec<usize>,
    descendants: Vec<BitSet>,
    input_schema: Option<Arc<jsonschema::Validator>>,
    correlation_key: Option<Expr>,
    dependencies: Vec<CompiledDependency>,
}

struct Compiler<'a> {
    def: &'a Definition,
    actions: &'a ActionRegistry,
    problems: Vec<Problem>,
}

fn is_step_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && id.len() <= 64
}

fn is_workflow_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && id.len() <= 64
}

fn json_depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

impl<'a> Compiler<'a> {
    fn new(def: &'a Definition, actions: &'a ActionRegistry) -> Self {
        Compiler {
            def,
            actions,
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn run(mut self) -> Result<Compiled, Vec<Problem>> {
        let def = self.def;
        self.limits();
        if !is_workflow_id(&def.id) {
            self.problem(
                "$.id",
                format!(
                    "`{}` is not a workflow id: use 1 to 64 lower case letters, digits, `-` \
                     and `_`, starting with a letter",
                    def.id
                ),
            );
        }
        if def.name.trim().is_empty() {
            self.problem(
                "$.name",
                "the name is empty: give the workflow a name people recognise",
            );
        }
        let input_schema = self.input_schema();
        if let Some(retry) = &def.retry {
            self.retry(retry, "$.retry");
        }
        self.triggers();
        let correlation_key = self.correlation_key();
        let dependencies = self.dependencies(correlation_key.is_some());

        // Ids and groups first: everything else refers to them.
        let mut index = HashMap::new();
        for (i, step) in def.steps.iter().enumerate() {
            let path = format!("$.steps[{i}].id");
            if !is_step_id(&step.id) {
                self.problem(
                    &path,
                    format!(
                        "`{}` is not a step id: use 1 to 64 lower case letters, digits and `_`, \
                         starting with a letter (ids are names in expressions)",
                        step.id
                    ),
                );
            }
            if let Some(first) = index.insert(step.id.clone(), i) {
                index.insert(step.id.clone(), first);
                self.problem(
                    path,
                    format!(
                        "the id `{}` is already used by $.steps[{first}]; step ids must be unique",
                        step.id
                    ),
                );
            }
        }
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, step) in def.steps.iter().enumerate() {
            if let Some(g) = &step.parallel_group {
                if !is_step_id(g) {
                    self.problem(
                        format!("$.steps[{i}].parallel_group"),
                        format!("`{g}` is not a group name: use lower case letters, digits and `_`, starting with a letter"),
                    );
                }
                if index.contains_key(g.as_str()) {
                    self.problem(
                        format!("$.steps[{i}].parallel_group"),
                        format!(
                            "the group name `{g}` is also a step id; give the group another name"
                        ),
                    );
                }
                groups.entry(g.as_str()).or_default().push(i);
            }
        }
        if def.steps.is_empty() {
            self.problem("$.steps", "the workflow has no steps; add at least one");
        }

        // Dependencies.
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); def.steps.len()];
        for (i, step) in def.steps.iter().enumerate() {
            for (j, dep) in step.depends_on.iter().enumerate() {
                let path = format!("$.steps[{i}].depends_on[{j}]");
                let targets: Vec<usize> = if let Some(&d) = index.get(dep) {
                    vec![d]
                } else if let Some(members) = groups.get(dep.as_str()) {
                    if members.contains(&i) {
                        self.problem(
                            &path,
                            format!(
                                "step `{}` depends on its own parallel group `{dep}`",
                                step.id
                            ),
                        );
                        continue;
                    }
                    members.clone()
                } else {
                    self.problem(
                        path,
                        format!(
                            "`{dep}` is neither a step nor a parallel group of this workflow{}",
                            suggest(dep, index.keys().map(String::as_str))
                        ),
                    );
                    continue;
                };
                for d in targets {
                    if d == i {
                        self.problem(&path, format!("step `{}` depends on itself", step.id));
                    } else if !deps[i].contains(&d) {
                        deps[i].push(d);
                    }
                }
            }
        }
        let (order, cyclic) = self.order(&deps);
        let descendants = descendants(&deps, &order);
        let ancestors_of = |i: usize, j: usize| descendants[j].contains(i);

        let mut steps = Vec::with_capacity(def.steps.len());
        for (i, step) in def.steps.iter().enumerate() {
            if cyclic.contains(&i) {
                continue;
            }
            let upstream = |j: usize| ancestors_of(i, j);
            steps.push(self.step(i, step, &index, &upstream, deps[i].clone()));
        }
        // Steps that depend on a cycle can never run.
        for (i, step) in def.steps.iter().enumerate() {
            if !cyclic.contains(&i) && deps[i].iter().any(|d| cyclic.contains(d)) {
                self.problem(
                    format!("$.steps[{i}]"),
                    format!("step `{}` can never run: it depends on a cycle", step.id),
                );
            }
        }

        if self.problems.is_empty() {
            Ok(Compiled {
                steps,
                index,
                order,
                descendants,
                input_schema,
                correlation_key,
                dependencies,
            })
        } else {
            Err(self.problems)
        }
    }

    fn limits(&mut self) {
        let def = self.def;
        if def.steps.len() > MAX_STEPS {
            self.problem(
                "$.steps",
                format!(
                    "the workflow has {} steps, the limit is {MAX_STEPS}; split it into workflows that start one another",
                    def.steps.len()
                ),
            );
        }
        match serde_json::to_value(def) {
            Ok(v) => {
                let size = v.to_string().len();
                if size > MAX_DEFINITION_BYTES {
                    self.problem(
                        "$",
                        format!(
                            "the definition is {size} bytes as JSON, the limit is {MAX_DEFINITION_BYTES}; move large data into the run's input"
                        ),
                    );
                }
                let depth = json_depth(&v);
                if depth > MAX_NESTING {
                    self.problem(
                        "$",
                        format!(
                            "the definition nests {depth} levels deep, the limit is {MAX_NESTING}"
                        ),
                    );
                }
            }
            Err(e) => self.problem(
                "$",
                format!("the definition cannot be written as JSON: {e}"),
            ),
        }
    }

    fn input_schema(&mut self) -> Option<Arc<jsonschema::Validator>> {
        let schema = self.def.input_schema.as_ref()?;
        match jsonschema::validator_for(schema) {
            Ok(v) => Some(Arc::new(v)),
            Err(e) => {
                self.problem(
                    format!(
                        "$.input_schema{}",
                        json_pointer_to_path(&e.instance_path().to_string())
                            .trim_start_matches('$')
                    ),
                    format!("input_schema is not a valid JSON Schema: {e}"),
                );
                None
            }
        }
    }

    fn triggers(&mut self) {
        for (i, t) in self.def.triggers.iter().enumerate() {
            let path = format!("$.triggers[{i}]");
            match t {
                Trigger::Cron {
                    expression,
                    time_zone,
                    ..
                } => {
                    let fields = expression.split_whitespace().count();
                    if fields != 5 {
                        self.problem(
                            format!("{path}.expression"),
                            format!(
                                "`{expression}` has {fields} fields; a cron expression has 5: minute hour day-of-month month day-of-week"
                            ),
                        );
                    } else if let Err(e) = expression.parse::<croner::Cron>() {
                        self.problem(
                            format!("{path}.expression"),
                            format!("`{expression}` is not a valid cron expression: {e}"),
                        );
                    }
                    if let Some(tz) = time_zone {
                        self.time_zone(tz, format!("{path}.time_zone"));
                    }
                }
                Trigger::Rate { every, .. } => {
                    if every.as_millis() < 60_000 {
                        self.problem(
                            format!("{path}.every"),
                            format!("`{every}` is too often; schedules run at most once a minute"),
                        );
                    }
                }
                Trigger::EventRelative {
                    field,
                    offsets,
                    at,
                    input,
                } => {
                    if let Some(value) = input {
                        match Template::compile(value) {
                            Ok(t) => {
                                for (suffix, e) in t.exprs() {
                                    self.only_reads(
                                        e,
                                        &format!("{path}.input{suffix}"),
                                        &[Var::Event],
                                        "an event-relative trigger's input",
                                    );
                                }
                            }
                            Err(errors) => {
                                for e in errors {
                                    self.problem(format!("{path}.input{}", e.path), e.error);
                                }
                            }
                        }
                    }
                    if !matches!(field.as_str(), "starts_at" | "ends_at") {
                        self.problem(
                            format!("{path}.field"),
                            format!("`{field}` is not an event date; use `starts_at` or `ends_at`"),
                        );
                    }
                    if offsets.is_empty() {
                        self.problem(
                            format!("{path}.offsets"),
                            "give at least one offset, e.g. \"-7d\"",
                        );
                    }
                    if let Some(at) = at {
                        self.local_time(at, format!("{path}.at"));
                    }
                }
                Trigger::Webhook { name } => {
                    if !is_workflow_id(name) {
                        self.problem(
                            format!("{path}.name"),
                            format!("`{name}` is not a hook name: use lower case letters, digits, `-` and `_`"),
                        );
                    }
                }
            }
        }
    }

    fn correlation_key(&mut self) -> Option<Expr> {
        let source = self.def.correlation_key.as_deref()?;
        let path = "$.correlation_key";
        let TemplateString::Expr(inner) = classify(source) else {
            self.problem(
                path,
                format!(
                    "`{source}` is not an expression; write the key as `${{...}}` over the input, e.g. \"${{input.event.id}}\""
                ),
            );
            return None;
        };
        match Expr::compile(inner) {
            Ok(e) => self
                .only_reads(&e, path, &[Var::Input], "a correlation key")
                .then_some(e),
            Err(e) => {
                self.problem(path, e.to_string());
                None
            }
        }
    }

    /// Checks that `e` reads nothing but `allowed`; says what `what` may read otherwise.
    fn only_reads(&mut self, e: &Expr, path: &str, allowed: &[Var], what: &str) -> bool {
        let reads = e.reads();
        let mut names: Vec<String> = reads.unknown.clone();
        names.extend(reads.steps.keys().map(|id| format!("steps.{id}")));
        if reads.dynamic_steps {
            names.push("steps".into());
        }
        names.extend(
            reads
                .vars
                .keys()
                .filter(|v| !allowed.contains(v))
                .map(|v| v.name().to_owned()),
        );
        let can: Vec<&str> = allowed.iter().map(|v| v.name()).collect();
        for name in &names {
            self.problem(
                path,
                format!(
                    "`{}` reads `{name}`; {what} reads only {}",
                    e.source(),
                    can.join(" and ")
                ),
            );
        }
        names.is_empty()
    }

    fn dependencies(&mut self, has_key: bool) -> Vec<CompiledDependency> {
        let mut out = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, dep) in self.def.dependencies.iter().enumerate() {
            let path = format!("$.dependencies[{i}]");
            if let Some(d) = self.dependency(dep, &path, has_key) {
                out.push(d);
            }
            if let Some(first) = seen.insert(dep.workflow.as_str(), i) {
                self.problem(
                    format!("{path}.workflow"),
                    format!(
                        "`{}` is already a dependency at $.dependencies[{first}]; declare each workflow once",
                        dep.workflow
                    ),
                );
            }
        }
        out
    }

    fn dependency(
        &mut self,
        dep: &Dependency,
        path: &str,
        has_key: bool,
    ) -> Option<CompiledDependency> {
        let before = self.problems.len();
        let workflow = &dep.workflow;
        if !is_workflow_id(workflow) {
            self.problem(
                format!("{path}.workflow"),
                format!("`{workflow}` is not a workflow id"),
            );
        } else if *workflow == self.def.id {
            self.problem(
                format!("{path}.workflow"),
                format!("workflow `{workflow}` depends on itself; name another workflow"),
            );
        }
        let kind = dep.kind;
        if kind == DependencyKind::Blocking && !has_key {
            self.problem(
                path,
                "a blocking dependency waits for the other workflow's run with the same correlation key, and this workflow declares none; add a correlation_key such as \"${input.event.id}\"",
            );
        }
        let when = match (&dep.when, kind) {
            (None, _) => None,
            (Some(_), DependencyKind::Blocking | DependencyKind::Parallel) => {
                self.problem(
                    format!("{path}.when"),
                    "only a conditional dependency has a condition; remove `when` or make the type `conditional`",
                );
                None
            }
            (Some(source), DependencyKind::Conditional) => {
                let source = match classify(source) {
                    TemplateString::Expr(inner) => inner,
                    _ => source.as_str(),
                };
                match Expr::compile(source) {
                    Ok(e) => {
                        let what = "a dependency's condition";
                        self.only_reads(
                            &e,
                            &format!("{path}.when"),
                            &[Var::Output, Var::Input],
                            what,
                        )
                        .then_some(e)
                    }
                    Err(e) => {
                        self.problem(format!("{path}.when"), e.to_string());
                        None
                    }
                }
            }
        };
        let input = match (&dep.input, kind) {
            (None, _) => None,
            (Some(_), DependencyKind::Blocking) => {
                self.problem(
                    format!("{path}.input"),
                    "a blocking dependency starts nothing, so it takes no input; remove `input`",
                );
                None
            }
            (Some(value), _) => {
                let allowed: &[Var] = if kind == DependencyKind::Conditional {
                    &[Var::Input, Var::Output]
                } else {
                    &[Var::Input]
                };
                match Template::compile(value) {
                    Ok(t) => {
                        for (suffix, e) in t.exprs() {
                            let what = if kind == DependencyKind::Parallel {
                                "the input of a parallel dependency (started before the other run has an output)"
                            } else {
                                "a dependency's input"
                            };
                            self.only_reads(e, &format!("{path}.input{suffix}"), allowed, what);
                        }
                        Some(t)
                    }
                    Err(errors) => {
                        for e in errors {
                            self.problem(format!("{path}.input{}", e.path), e.error);
                        }
                        None
                    }
                }
            }
        };
        (self.problems.len() == before).then(|| CompiledDependency {
            workflow: workflow.clone(),
            kind,
            when,
            input,
        })
    }

    fn time_zone(&mut self, tz: &str, path: String) -> Option<Tz> {
        match tz.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.problem(
                    path,
                    format!("`{tz}` is not an IANA time zone; write one like \"Europe/Berlin\" or \"America/New_York\""),
                );
                None
            }
        }
    }

    fn local_time(&mut self, at: &str, path: String) -> Option<NaiveTime> {
        match NaiveTime::parse_from_str(at, "%H:%M") {
            Ok(t) => Some(t),
            Err(_) => {
                self.problem(
                    path,
                    format!("`{at}` is not a time of day; write it as HH:MM, e.g. \"09:00\""),
                );
                None
            }
        }
    }

    fn duration(&mut self, d: Option<Duration>, path: String) {
        if let Some(d) = d
            && d > MAX_DURATION
        {
            self.problem(
                path,
                format!("`{d}` is longer than the limit of {MAX_DURATION}"),
            );
        }
    }

    fn retry(&mut self, r: &RetryPolicy, path: &str) {
        self.duration(Some(r.initial_interval), format!("{path}.initial_interval"));
        self.duration(Some(r.max_interval), format!("{path}.max_interval"));
        if r.max_attempts == 0 || r.max_attempts > MAX_ATTEMPTS {
            self.problem(
                format!("{path}.max_attempts"),
                format!("max_attempts must be between 1 (no retry) and {MAX_ATTEMPTS}"),
            );
        }
        if !(r.backoff_rate.is_finite() && r.backoff_rate >= 1.0) {
            self.problem(
                format!("{path}.backoff_rate"),
                "backoff_rate must be at least 1.0 (1.0 waits the same each time)",
            );
        }
        if r.initial_interval > r.max_interval {
            self.problem(
                format!("{path}.initial_interval"),
                format!(
                    "initial_interval ({}) is longer than max_interval ({})",
                    r.initial_interval, r.max_interval
                ),
            );
        }
    }

    fn order(&mut self, deps: &[Vec<usize>]) -> (Vec<usize>, HashSet<usize>) {
        // Kahn's algorithm; what it cannot order is on or behind a cycle.
        let n = deps.len();
        let mut indegree: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut dependents = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        let mut order: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut k = 0;
        while k < order.len() {
            let i = order[k];
            k += 1;
            for &j in &dependents[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    order.push(j);
                }
            }
        }
        let mut blocked: HashSet<usize> = (0..n).filter(|i| !order.contains(i)).collect();
        // Name each cycle: walk dependencies inside the blocked set until a step repeats.
        let mut reported: HashSet<usize> = HashSet::new();
        let mut on_cycle = HashSet::new();
        for start in 0..n {
            if !blocked.contains(&start) || reported.contains(&start) {
                continue;
            }
            let mut path = vec![start];
            let mut cur = start;
            let cycle = loop {
                let Some(&next) = deps[cur].iter().find(|d| blocked.contains(d)) else {
                    break None;
                };
                if let Some(pos) = path.iter().position(|&p| p == next) {
                    break Some(path[pos..].to_vec());
                }
                path.push(next);
                cur = next;
            };
            let Some(cycle) = cycle else { continue };
            if cycle.iter().any(|c| reported.contains(c)) {
                continue;
            }
            let mut names: Vec<&str> = cycle
                .iter()
                .rev()
                .map(|&c| self.def.steps[c].id.as_str())
                .collect();
            names.push(names[0]);
            let first = *cycle.iter().min().unwrap_or(&start);
            self.problem(
                format!("$.steps[{first}].depends_on"),
                format!(
                    "steps {} form a cycle; remove one of these dependencies",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(" -> ")
                ),
            );
            reported.extend(cycle.iter().copied());
            on_cycle.extend(cycle);
        }
        // Steps only behind a cycle are reported separately as unreachable.
        blocked.retain(|i| on_cycle.contains(i) || !deps[*i].iter().any(|d| on_cycle.contains(d)));
        (order, blocked)
    }

    fn step(
        &mut self,
        i: usize,
        step: &Step,
        index: &HashMap<String, usize>,
        upstream: &dyn Fn(usize) -> bool,
        deps: Vec<usize>,
    ) -> CompiledStep {
        let path = format!("$.steps[{i}]");
        let ctx = RefCtx {
            step: i,
            index,
            upstream,
            for_each: step.for_each.is_some(),
            repeat: step.repeat.is_some(),
            own: false,
        };
        if let Some(action) = &step.action {
            if self.actions.get(action).is_none() {
                let names: Vec<&str> = self.actions.specs().map(|s| s.name.as_str()).collect();
                let mut hint = suggest(action, names.iter().copied());
                if hint.is_empty() {
                    hint = format!("; the actions are: {}", names.join(", "));
                }
                self.problem(
                    format!("{path}.action"),
                    format!("`{action}` is not an action this host offers{hint}"),
                );
            }
        } else if step.wait.is_none() {
            self.problem(
                &path,
                format!(
                    "step `{}` has neither an action nor a wait: give it one",
                    step.id
                ),
            );
        }
        if step.for_each.is_some() && step.repeat.is_some() {
            self.problem(
                &path,
                format!(
                    "step `{}` has both for_each and loop; loop inside a child workflow started for each item instead",
                    step.id
                ),
            );
        }
        let when = step
            .when
            .as_deref()
            .and_then(|w| self.expr(w, format!("{path}.when"), &ctx, &[Var::Now]));
        let input = self.template(
            &step.input,
            format!("{path}.input"),
            &ctx,
            &[Var::Item, Var::Index, Var::Iteration],
        );
        let output = step.output.as_ref().map(|o| {
            self.template(
                o,
                format!("{path}.output"),
                &ctx,
                &[Var::Result, Var::Item, Var::Index, Var::Iteration],
            )
        });
        let for_each = step.for_each.as_ref().and_then(|fe| {
            let p = format!("{path}.for_each");
            if fe.concurrency == 0 || fe.concurrency > MAX_CONCURRENCY {
                self.problem(
                    format!("{p}.concurrency"),
                    format!("concurrency must be between 1 and {MAX_CONCURRENCY}"),
                );
            }
            if !(0.0..=1.0).contains(&fe.tolerated_failure) {
                self.problem(
                    format!("{p}.tolerated_failure"),
                    "tolerated_failure is a share between 0 (no failure tolerated) and 1",
                );
            }
            if fe.items.trim().is_empty() {
                self.problem(
                    format!("{p}.items"),
                    "items is empty: give a CEL expression for the list, e.g. input.attendees",
                );
                return None;
            }
            let no_item = RefCtx {
                for_each: false,
                ..ctx
            };
            self.expr(&fe.items, format!("{p}.items"), &no_item, &[])
                .map(|items| CompiledForEach {
                    items,
                    concurrency: fe.concurrency,
                    tolerated_failure: fe.tolerated_failure,
                })
        });
        let repeat = step.repeat.as_ref().and_then(|l| {
            let p = format!("{path}.loop");
            if l.max_iterations == 0 || l.max_iterations > MAX_ITERATIONS {
                self.problem(
                    format!("{p}.max_iterations"),
                    format!("max_iterations must be between 1 and {MAX_ITERATIONS}"),
                );
            }
            if l.until.trim().is_empty() {
                self.problem(
                    format!("{p}.until"),
                    "until is empty: give the CEL condition that ends the loop",
                );
                return None;
            }
            self.expr(
                &l.until,
                format!("{p}.until"),
                &RefCtx { own: true, ..ctx },
                &[Var::Iteration, Var::Now],
            )
            .map(|until| CompiledLoop {
                until,
                max_iterations: l.max_iterations,
                delay: l.delay,
                on_exhausted: l.on_exhausted,
            })
        });
        let wait = step
            .wait
            .as_ref()
            .and_then(|w| self.wait(w, format!("{path}.wait"), &ctx));
        let retry = step
            .retry
            .clone()
            .or_else(|| self.def.retry.clone())
            .unwrap_or_default();
        if let Some(r) = &step.retry {
            self.retry(r, &format!("{path}.retry"));
        }
        self.duration(step.timeout, format!("{path}.timeout"));
        self.duration(
            step.repeat.as_ref().and_then(|l| l.delay),
            format!("{path}.loop.delay"),
        );
        self.duration(
            step.wait.as_ref().and_then(|w| w.duration),
            format!("{path}.wait.duration"),
        );
        if step.timeout.is_some_and(|t| t == Duration::ZERO) {
            self.problem(
                format!("{path}.timeout"),
                "a timeout of zero can never be met; give a positive duration",
            );
        }
        let compensation = step
            .compensate
            .as_ref()
            .and_then(|c| self.compensation(step, c, &path, &ctx));
        let policy = step.on_failure.as_ref().unwrap_or(&self.def.on_failure);
        let policy_path = if step.on_failure.is_some() {
            format!("{path}.on_failure")
        } else {
            "$.on_failure".to_owned()
        };
        let on_failure = match policy {
            FailurePolicy::Rollback => Policy::Rollback,
            FailurePolicy::Continue => Policy::Continue,
            FailurePolicy::Pause => Policy::Pause,
            FailurePolicy::RollbackTo(target) => match index.get(target) {
                Some(&t) if t == i || upstream(t) => Policy::RollbackTo(t),
                Some(_) => {
                    self.problem(
                        format!("{policy_path}.rollback_to"),
                        format!("`{target}` does not come before step `{}`; rollback_to names the step itself or one it depends on", step.id),
                    );
                    Policy::Rollback
                }
                None => {
                    self.problem(
                        format!("{policy_path}.rollback_to"),
                        format!(
                            "`{target}` is not a step of this workflow{}",
                            suggest(target, index.keys().map(String::as_str))
                        ),
                    );
                    Policy::Rollback
                }
            },
        };
        let always_false = |w: &str| match classify(w) {
            TemplateString::Expr(inner) => inner.trim() == "false",
            _ => w.trim() == "false",
        };
        if let Some(w) = &step.when
            && always_false(w)
        {
            self.problem(
                format!("{path}.when"),
                format!(
                    "step `{}` can never run: its condition is always false",
                    step.id
                ),
            );
        }
        CompiledStep {
            id: step.id.clone(),
            action: step.action.clone(),
            deps,
            when,
            input,
            output,
            for_each,
            repeat,
            wait,
            retry,
            timeout: step.timeout,
            compensation,
            on_failure,
        }
    }

    fn compensation(
        &mut self,
        step: &Step,
        c: &Compensate,
        path: &str,
        ctx: &RefCtx<'_>,
    ) -> Option<CompiledCompensation> {
        let p = format!("{path}.compensate");
        let (explicit, input, retry) = match c {
            Compensate::Builtin(false) => return None,
            Compensate::Builtin(true) => (None, None, None),
            Compensate::Spec(s) => (s.action.clone(), s.input.as_ref(), s.retry.clone()),
        };
        let Some(forward) = &step.action else {
            self.problem(
                &p,
                format!(
                    "step `{}` has no action, so there is nothing to compensate",
                    step.id
                ),
            );
            return None;
        };
        if let Some(r) = &retry {
            self.retry(r, &format!("{p}.retry"));
        }
        let builtin = explicit.is_none();
        let action = explicit.unwrap_or_else(|| forward.clone());
        match self.actions.get(&action) {
            None => {
                if !builtin {
                    self.problem(
                        format!("{p}.action"),
                        format!("`{action}` is not an action this host offers"),
                    );
                }
                return None;
            }
            Some(spec) if builtin && !spec.compensable => {
                self.problem(
                    &p,
                    format!(
                        "action `{action}` declares no compensation; name the action that undoes it: compensate: {{action: ..., input: ...}}"
                    ),
                );
                return None;
            }
            Some(_) => {}
        }
        let input = input.map(|v| {
            self.template(
                v,
                format!("{p}.input"),
                &RefCtx { own: true, ..*ctx },
                &[Var::Item, Var::Index],
            )
        });
        Some(CompiledCompensation {
            action,
            builtin,
            input,
            retry: retry.unwrap_or_default(),
        })
    }

    fn wait(
        &mut self,
        w: &crate::model::Wait,
        path: String,
        ctx: &RefCtx<'_>,
    ) -> Option<CompiledWait> {
        match (&w.duration, &w.until) {
            (Some(d), None) => {
                if w.offset.is_some() || w.at.is_some() || w.time_zone.is_some() {
                    self.problem(
                        &path,
                        "offset, at and time_zone go with until, not with duration",
                    );
                }
                Some(CompiledWait::For(*d))
            }
            (None, Some(until)) => {
                let instant = self.expr(
                    until,
                    format!("{path}.until"),
                    &RefCtx {
                        for_each: false,
                        repeat: false,
                        ..*ctx
                    },
                    &[],
                );
                let at =
                    w.at.as_ref()
                        .and_then(|a| self.local_time(a, format!("{path}.at")));
                let time_zone = match &w.time_zone {
                    None => Some(TimeZone::Fixed(Tz::UTC)),
                    Some(tz) => match classify(tz) {
                        TemplateString::Expr(src) => self
                            .expr(
                                src,
                                format!("{path}.time_zone"),
                                &RefCtx {
                                    for_each: false,
                                    repeat: false,
                                    ..*ctx
                                },
                                &[],
                            )
                            .map(TimeZone::Expr),
                        _ => self
                            .time_zone(tz, format!("{path}.time_zone"))
                            .map(TimeZone::Fixed),
                    },
                };
                Some(CompiledWait::Until {
                    instant: Box::new(instant?),
                    offset: w.offset,
                    at,
                    time_zone: time_zone?,
                })
            }
            (Some(_), Some(_)) => {
                self.problem(&path, "a wait has either a duration or an until, not both");
                None
            }
            (None, None) => {
                self.problem(
                    &path,
                    "a wait needs a duration (e.g. \"2d\") or an until (an instant)",
                );
                None
            }
        }
    }

    fn template(
        &mut self,
        value: &Value,
        path: String,
        ctx: &RefCtx<'_>,
        extra: &[Var],
    ) -> Template {
        match Template::compile(value) {
            Ok(t) => {
                for (suffix, e) in t.exprs() {
                    self.check_reads(e, &format!("{path}{suffix}"), ctx, extra);
                }
                t
            }
            Err(errors) => {
                for e in errors {
                    self.problem(format!("{path}{}", e.path), e.error);
                }
                Template::Literal(Value::Null)
            }
        }
    }

    fn expr(
        &mut self,
        source: &str,
        path: String,
        ctx: &RefCtx<'_>,
        extra: &[Var],
    ) -> Option<Expr> {
        let source = match classify(source) {
            TemplateString::Expr(inner) => inner.to_owned(),
            _ => source.to_owned(),
        };
        match Expr::compile(&source) {
            Ok(e) => {
                self.check_reads(&e, &path, ctx, extra);
                Some(e)
            }
            Err(e) => {
                self.problem(path, e.to_string());
                None
            }
        }
    }

    fn check_reads(&mut self, e: &Expr, path: &str, ctx: &RefCtx<'_>, extra: &[Var]) {
        let reads = e.reads();
        for name in &reads.unknown {
            self.problem(
                path,
                format!(
                    "`{}` names `{name}`, which is not defined; expressions can use input, steps.<id>.output, item, index, iteration and now",
                    e.source()
                ),
            );
        }
        if reads.dynamic_steps {
            self.problem(
                path,
                format!(
                    "`{}` uses `steps` without naming a step; write steps.<id>.output",
                    e.source()
                ),
            );
        }
        for var in reads.vars.keys() {
            let allowed = match var {
                Var::Input | Var::Now => true,
                Var::Item | Var::Index => ctx.for_each && extra.contains(var),
                Var::Iteration => ctx.repeat && extra.contains(var),
                Var::Result => extra.contains(var),
                Var::Output | Var::Event => false,
            };
            if !allowed {
                let hint = match var {
                    Var::Item | Var::Index => {
                        "only in a step with for_each (its input, output and compensation)"
                    }
                    Var::Iteration => "only in a step with a loop",
                    Var::Result => "only in a step's output shaping",
                    Var::Output => "only in a workflow dependency's `when` and `input`",
                    Var::Event => "only in an event-relative trigger's `input`",
                    _ => "",
                };
                self.problem(
                    path,
                    format!(
                        "`{}` uses `{}`, which exists {hint}",
                        e.source(),
                        var.name()
                    ),
                );
            }
        }
        for id in reads.steps.keys() {
            match ctx.index.get(id) {
                None => self.problem(
                    path,
                    format!("`{}` refers to step `{id}`, which does not exist{}", e.source(), suggest(id, ctx.index.keys().map(String::as_str))),
                ),
                Some(&j) if j == ctx.step => {
                    if !ctx.own {
                        self.problem(path, format!("`{}` refers to its own step `{id}`, whose output does not exist yet", e.source()));
                    }
                }
                Some(&j) if !(ctx.upstream)(j) => self.problem(
                    path,
                    format!(
                        "`{}` refers to step `{id}`, which does not come before this step; add it to depends_on",
                        e.source()
                    ),
                ),
                Some(_) => {}
            }
        }
    }
}

#[derive(Clone, Copy)]
struct RefCtx<'a> {
    step: usize,
    index: &'a HashMap<String, usize>,
    upstream: &'a dyn Fn(usize) -> bool,
    for_each: bool,
    repeat: bool,
    /// Whether the step's own output exists when this expression runs (loop `until`,
    /// compensation input).
    own: bool,
}

fn descendants(deps: &[Vec<usize>], order: &[usize]) -> Vec<BitSet> {
    let n = deps.len();
    let mut desc = vec![BitSet::new(n); n];
    // Walk in reverse topological order so each step's dependents are complete before it.
    for &i in order.iter().rev() {
        for &d in &deps[i] {
            let mut add = desc[i].clone();
            add.insert(i);
            desc[d].union(&add);
        }
    }
    desc
}

fn suggest<'n>(name: &str, candidates: impl Iterator<Item = &'n str>) -> String {
    let best = candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min();
    match best {
        Some((_, c)) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
