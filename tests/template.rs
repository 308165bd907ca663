//! The SAM template and the code agree: each function's FilterCriteria and `EVENT_TYPES` name
//! exactly the event types the function's code handles by default (the variants its payload
//! declares, but those it reads only when named).

use std::collections::{BTreeSet, HashMap};

use local_esm::template::{load, mappings, Mapping};
use shared::EventTypes;

/// The template as read by the one reader of it (the local event source mapping's).
fn template_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    std::fs::read_to_string(path).expect("template.yaml is readable")
}

/// The mapping of `logical_id` with `FilterAtSource` on, so its filter is in force.
fn mapping(text: &str, logical_id: &str) -> Mapping {
    let on = HashMap::from([("FilterAtSource".to_owned(), "true".to_owned())]);
    mappings(text, &on)
        .expect("the template's mappings read")
        .into_iter()
        .find(|m| m.logical_id == logical_id)
        .unwrap_or_else(|| panic!("{logical_id} has a Kinesis event"))
}

fn names(types: &[&str]) -> BTreeSet<String> {
    types.iter().map(|t| (*t).to_owned()).collect()
}

/// The function's event-type filter: the types its wanted-types pattern lists, and whether the
/// filter also lets JSON records with no `eventType` through (so they reach the poison capture).
fn filter(mapping: &Mapping) -> (BTreeSet<String>, bool) {
    assert!(
        !mapping.filters.is_empty(),
        "FilterCriteria is set when FilterAtSource is true"
    );
    let mut wanted = BTreeSet::new();
    let mut passes_untyped = false;
    for pattern in &mapping.filters {
        let keys: Vec<_> = pattern.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["data"], "Kinesis filters only on data: {pattern}");
        let values = pattern["data"]["eventType"]
            .as_array()
            .unwrap_or_else(|| panic!("a pattern on data.eventType: {pattern}"));
        for v in values {
            match v {
                serde_json::Value::String(s) => {
                    wanted.insert(s.clone());
                }
                other if *other == serde_json::json!({"exists": false}) => passes_untyped = true,
                other => panic!("an unexpected matcher {other} in {pattern}"),
            }
        }
    }
    (wanted, passes_untyped)
}

fn environment_types(text: &str, logical_id: &str) -> BTreeSet<String> {
    let template = load(text).expect("template.yaml is YAML");
    template["Resources"][logical_id]["Properties"]["Environment"]["Variables"]["EVENT_TYPES"]
        .as_str()
        .expect("EVENT_TYPES is set in the template")
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect()
}

fn check(logical_id: &str, types: &EventTypes) {
    let (defaults, supported) = (types.defaults(), types.declared());
    let text = template_text();
    let code = names(defaults);
    let (filtered, passes_untyped) = filter(&mapping(&text, logical_id));
    assert_eq!(
        filtered, code,
        "{logical_id}: FilterCriteria vs the types the payload declares by default"
    );
    assert!(
        passes_untyped,
        "{logical_id}: the filter must let records without eventType reach the poison capture"
    );
    assert_eq!(
        environment_types(&text, logical_id),
        code,
        "{logical_id}: EVENT_TYPES vs the code"
    );
    assert!(
        code.is_subset(&names(supported)),
        "{logical_id}: defaults are supported"
    );
}

#[test]
fn email_notifier_filter_matches_its_event_types() {
    check(
        "EmailNotifierFunction",
        &EventTypes::of::<email_notifier::Notifier>(),
    );
}

#[test]
fn inventory_updater_filter_matches_its_event_types() {
    check(
        "InventoryUpdaterFunction",
        &EventTypes::of::<inventory_updater::Updater>(),
    );
}

/// The check itself catches a disagreement: a filter naming a type the code does not handle.
#[test]
fn a_filter_that_disagrees_is_caught() {
    let text = r#"
Parameters:
  FilterAtSource: {Type: String, Default: "false"}
Conditions:
  FilterAtSource: !Equals [!Ref FilterAtSource, "true"]
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Orders:
          Type: Kinesis
          Properties:
            StartingPosition: TRIM_HORIZON
            FilterCriteria: !If
              - FilterAtSource
              - Filters:
                  - Pattern: '{"data": {"eventType": ["ORDER_PLACED", "ORDER_SHIPPED"]}}'
                  - Pattern: '{"data": {"eventType": [{"exists": false}]}}'
              - !Ref AWS::NoValue
"#;
    let (filtered, passes_untyped) = filter(&mapping(text, "Fn"));
    assert!(passes_untyped);
    let code = EventTypes::of::<email_notifier::Notifier>();
    assert_ne!(filtered, names(code.defaults()));
    assert!(filtered.contains("ORDER_SHIPPED"));
}
