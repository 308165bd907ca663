//! The SAM template and the code agree: each function's FilterCriteria and `EVENT_TYPES` name
//! exactly the event types the function's code handles by default.

use std::collections::BTreeSet;

use yaml_rust2::{Yaml, YamlLoader};

fn template() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).expect("template.yaml is readable");
    YamlLoader::load_from_str(&text)
        .expect("template.yaml is YAML")
        .pop()
        .expect("template.yaml has a document")
}

fn names(types: &[&str]) -> BTreeSet<String> {
    types.iter().map(|t| (*t).to_owned()).collect()
}

/// The function's event-type filter: the types its wanted-types pattern lists, and whether the
/// filter also lets JSON records with no `eventType` through (so they reach the poison capture).
fn filter(function: &Yaml) -> (BTreeSet<String>, bool) {
    let criteria = &function["Properties"]["Events"]["Orders"]["Properties"]["FilterCriteria"];
    // `!If [FilterAtSource, {Filters: ...}, !Ref AWS::NoValue]`: the filter is the second item.
    let filters = criteria[1]["Filters"]
        .as_vec()
        .expect("FilterCriteria is `!If [FilterAtSource, {Filters: [...]}, !Ref AWS::NoValue]`");
    let mut wanted = BTreeSet::new();
    let mut passes_untyped = false;
    for f in filters {
        let pattern: serde_json::Value =
            serde_json::from_str(f["Pattern"].as_str().expect("a Pattern string"))
                .expect("the Pattern is JSON");
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

fn environment_types(function: &Yaml) -> BTreeSet<String> {
    function["Properties"]["Environment"]["Variables"]["EVENT_TYPES"]
        .as_str()
        .expect("EVENT_TYPES is set in the template")
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect()
}

fn check(logical_id: &str, defaults: &[&str], supported: &[&str]) {
    let t = template();
    let function = &t["Resources"][logical_id];
    assert_eq!(
        function["Type"].as_str(),
        Some("AWS::Serverless::Function"),
        "{logical_id} is a function in template.yaml"
    );
    let code = names(defaults);
    let (filtered, passes_untyped) = filter(function);
    assert_eq!(
        filtered, code,
        "{logical_id}: FilterCriteria vs DEFAULT_EVENT_TYPES"
    );
    assert!(
        passes_untyped,
        "{logical_id}: the filter must let records without eventType reach the poison capture"
    );
    assert_eq!(
        environment_types(function),
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
        email_notifier::DEFAULT_EVENT_TYPES,
        email_notifier::SUPPORTED_EVENT_TYPES,
    );
}

#[test]
fn inventory_updater_filter_matches_its_event_types() {
    check(
        "InventoryUpdaterFunction",
        inventory_updater::DEFAULT_EVENT_TYPES,
        inventory_updater::SUPPORTED_EVENT_TYPES,
    );
}

/// The check itself catches a disagreement: a filter naming a type the code does not handle.
#[test]
fn a_filter_that_disagrees_is_caught() {
    let yaml = YamlLoader::load_from_str(
        r#"
Properties:
  Events:
    Orders:
      Properties:
        FilterCriteria: !If
          - FilterAtSource
          - Filters:
              - Pattern: '{"data": {"eventType": ["ORDER_PLACED", "ORDER_SHIPPED"]}}'
              - Pattern: '{"data": {"eventType": [{"exists": false}]}}'
          - !Ref AWS::NoValue
"#,
    )
    .expect("YAML")
    .pop()
    .expect("a document");
    let (filtered, passes_untyped) = filter(&yaml);
    assert!(passes_untyped);
    assert_ne!(filtered, names(email_notifier::DEFAULT_EVENT_TYPES));
    assert!(filtered.contains("ORDER_SHIPPED"));
}
