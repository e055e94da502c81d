//! Version lifecycle, written once over the ports: which version a start uses, deprecation,
//! retirement and the alias, with the refusals an operator needs to read.

use crate::{Alias, Canary, ExecutionStore, StoreError, VersionState, VersionStore};

/// A refused version operation: what is wrong, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error(
        "workflow {workflow} has no version {number}; `eventflow versions {workflow}` lists them"
    )]
    NoSuchVersion { workflow: String, number: u32 },
    #[error("workflow {0} has no published version; publish it first")]
    NoSuchWorkflow(String),
    #[error(
        "version {number} of {workflow} is {state}: it starts nothing new; start the active version {active} instead"
    )]
    NotStartable {
        workflow: String,
        number: u32,
        state: &'static str,
        active: u32,
    },
    #[error(
        "version {number} of {workflow} still has {count} unfinished run(s); let them finish or migrate them, then retire it"
    )]
    InUse {
        workflow: String,
        number: u32,
        count: usize,
    },
    #[error("version {number} of {workflow} must be deprecated before it is retired")]
    NotDeprecated { workflow: String, number: u32 },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn state_name(s: VersionState) -> &'static str {
    match s {
        VersionState::Active => "active",
        VersionState::Deprecated => "deprecated",
        VersionState::Retired => "retired",
    }
}

/// The alias in force: the stored one, or the latest version.
pub async fn current_alias(
    versions: &dyn VersionStore,
    workflow: &str,
) -> Result<Alias, VersionError> {
    if let Some(alias) = versions.alias(workflow).await? {
        return Ok(alias);
    }
    let latest = versions
        .latest(workflow)
        .await?
        .ok_or_else(|| VersionError::NoSuchWorkflow(workflow.to_owned()))?;
    Ok(Alias {
        workflow_id: workflow.to_owned(),
        active: latest.number,
        canary: None,
    })
}

/// The version a new start uses: `number` if given (refused unless active), otherwise the
/// alias's choice for the start's idempotency key.
pub async fn version_for_start(
    versions: &dyn VersionStore,
    workflow: &str,
    number: Option<u32>,
    start_key: &str,
) -> Result<u32, VersionError> {
    let alias = current_alias(versions, workflow).await?;
    let chosen = number.unwrap_or_else(|| alias.choose(start_key));
    require_exists(versions, workflow, chosen).await?;
    match versions.state(workflow, chosen).await? {
        VersionState::Active => Ok(chosen),
        other => Err(VersionError::NotStartable {
            workflow: workflow.to_owned(),
            number: chosen,
            state: state_name(other),
            active: alias.active,
        }),
    }
}

/// Refuses a version number the workflow does not have.
async fn require_exists(
    versions: &dyn VersionStore,
    workflow: &str,
    number: u32,
) -> Result<(), VersionError> {
    match versions.version(workflow, number).await? {
        Some(_) => Ok(()),
        None => Err(VersionError::NoSuchVersion {
            workflow: workflow.to_owned(),
            number,
        }),
    }
}

async fn require_active(
    versions: &dyn VersionStore,
    workflow: &str,
    number: u32,
) -> Result<(), VersionError> {
    require_exists(versions, workflow, number).await?;
    match versions.state(workflow, number).await? {
        VersionState::Active => Ok(()),
        other => Err(VersionError::Invalid(format!(
            "version {number} of {workflow} is {}; only an active version can take new starts",
            state_name(other)
        ))),
    }
}

/// Points the alias at `active`, with an optional canary taking `weight` percent of starts.
pub async fn set_alias(
    versions: &dyn VersionStore,
    workflow: &str,
    active: u32,
    canary: Option<Canary>,
) -> Result<Alias, VersionError> {
    require_active(versions, workflow, active).await?;
    if let Some(c) = canary {
        if !(1..=99).contains(&c.weight) {
            return Err(VersionError::Invalid(format!(
                "a canary weight is a percentage from 1 to 99, not {}",
                c.weight
            )));
        }
        if c.version == active {
            return Err(VersionError::Invalid(
                "the canary must be another version than the active one".into(),
            ));
        }
        require_active(versions, workflow, c.version).await?;
    }
    let alias = Alias {
        workflow_id: workflow.to_owned(),
        active,
        canary,
    };
    versions.set_alias(&alias).await?;
    Ok(alias)
}

/// Stops a version from starting new runs; its runs go on. The alias may not point at it.
pub async fn deprecate(
    versions: &dyn VersionStore,
    workflow: &str,
    number: u32,
) -> Result<(), VersionError> {
    require_active(versions, workflow, number).await?;
    let alias = current_alias(versions, workflow).await?;
    if alias.active == number || alias.canary.is_some_and(|c| c.version == number) {
        return Err(VersionError::Invalid(format!(
            "version {number} of {workflow} takes new starts through the alias; point the alias at another version first"
        )));
    }
    versions
        .set_state(workflow, number, VersionState::Deprecated)
        .await?;
    Ok(())
}

/// Retires a deprecated version no run uses any more.
pub async fn retire(
    versions: &dyn VersionStore,
    executions: &dyn ExecutionStore,
    workflow: &str,
    number: u32,
) -> Result<(), VersionError> {
    require_exists(versions, workflow, number).await?;
    if versions.state(workflow, number).await? != VersionState::Deprecated {
        return Err(VersionError::NotDeprecated {
            workflow: workflow.to_owned(),
            number,
        });
    }
    let count = executions
        .list(None, Some(workflow))
        .await?
        .iter()
        .filter(|r| r.version == number && !r.status.is_terminal())
        .count();
    if count > 0 {
        return Err(VersionError::InUse {
            workflow: workflow.to_owned(),
            number,
            count,
        });
    }
    versions
        .set_state(workflow, number, VersionState::Retired)
        .await?;
    Ok(())
}

/// The cycle of workflow dependencies `def` would close with the latest versions of the other
/// workflows in `versions`, told from `def`'s workflow when it is on it (the first workflow
/// repeated at the end), or `None`.
pub async fn dependency_cycle(
    versions: &dyn VersionStore,
    def: &eventflow_engine::Definition,
) -> Result<Option<Vec<String>>, StoreError> {
    let mut others = Vec::new();
    for id in versions.workflows().await? {
        if id != def.id
            && let Some(record) = versions.latest(&id).await?
        {
            others.push(record.definition);
        }
    }
    let Some(mut cycle) = eventflow_engine::dependency_cycle(others.iter().chain([def])) else {
        return Ok(None);
    };
    cycle.pop();
    if let Some(at) = cycle.iter().position(|w| *w == def.id) {
        cycle.rotate_left(at);
    }
    if let Some(first) = cycle.first().cloned() {
        cycle.push(first);
    }
    Ok(Some(cycle))
}

/// A published version, compiled for running: read from `versions` and compiled with the
/// host's actions. A version missing from the store, or one that no longer validates (the
/// host lost an action it names), is a store error naming it.
pub async fn compiled(
    versions: &dyn VersionStore,
    registry: &eventflow_engine::ActionRegistry,
    workflow: &str,
    number: u32,
) -> Result<eventflow_engine::Version, StoreError> {
    let record = versions.version(workflow, number).await?.ok_or_else(|| {
        StoreError::Unavailable(format!(
            "version {number} of {workflow} is not in the store"
        ))
    })?;
    eventflow_engine::Version::compile(record.definition, number, registry).map_err(|p| {
        StoreError::Unavailable(format!(
            "version {number} of {workflow} no longer validates: {}",
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })
}
