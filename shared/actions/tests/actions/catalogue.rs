//! The catalogue validation reads and the implementations hosts run agree.

use serde_json::Value;

use crate::support::{World, action};

#[tokio::test]
async fn every_catalogued_action_is_implemented_and_can_undo_itself_exactly_when_it_says_so() {
    let world = World::new();
    let registry = eventflow_actions::registry();
    let actions = eventflow_actions::actions(reqwest::Client::new());
    assert_eq!(registry.specs().count(), actions.len());
    for spec in registry.specs() {
        let implementation = actions
            .get(spec.name.as_str())
            .unwrap_or_else(|| panic!("`{}` is catalogued but not implemented", spec.name));
        assert_eq!(implementation.name(), spec.name);
        // An action that keeps the default compensation answers `NoCompensation` to anything;
        // one that overrides it looks at its input first.
        let answer = action(&spec.name)
            .compensate(&world.compensation("s", None, 1), &Value::Null, None)
            .await;
        let overrides = !matches!(&answer, Err(e) if e.name == "NoCompensation");
        assert_eq!(
            overrides, spec.compensable,
            "`{}`: catalogue says compensable = {}, compensate answered {answer:?}",
            spec.name, spec.compensable
        );
    }
}
