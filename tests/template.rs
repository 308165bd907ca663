//! The SAM template and the code agree: each function's FilterCriteria and `EVENT_TYPES` name
//! exactly the event types the function's code handles by default (the variants its payload
//! declares, but those it reads only when named). And the template keeps two promises of the
//! order saga: only inventory-updater may write to the stream, and the order-status read API is
//! reachable only through a function URL with IAM authentication.

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
    let supported = types.declared();
    let code = names(types.defaults());
    check_types(logical_id, &code);
    assert!(
        code.is_subset(&names(supported)),
        "{logical_id}: defaults are supported"
    );
}

/// The function's FilterCriteria and `EVENT_TYPES` name exactly `expected`, and the filter lets
/// records without `eventType` through.
fn check_types(logical_id: &str, expected: &BTreeSet<String>) {
    let text = template_text();
    let (filtered, passes_untyped) = filter(&mapping(&text, logical_id));
    assert_eq!(
        &filtered, expected,
        "{logical_id}: FilterCriteria vs the types the payload declares by default"
    );
    assert!(
        passes_untyped,
        "{logical_id}: the filter must let records without eventType reach the poison capture"
    );
    assert_eq!(
        &environment_types(&text, logical_id),
        expected,
        "{logical_id}: EVENT_TYPES vs the code"
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

/// order-status keeps the status from every event of the saga: its filter names every type its
/// payload declares, and those are the saga's eight.
#[test]
fn order_status_filter_names_every_type_of_the_saga() {
    let types = EventTypes::of::<order_status::OrderStatus>();
    check("OrderStatusFunction", &types);
    assert_eq!(
        types.defaults().iter().copied().collect::<BTreeSet<_>>(),
        [
            "ORDER_PLACED",
            "ORDER_CREATED",
            "ORDER_CANCELLED",
            "INVENTORY_RESERVED",
            "INVENTORY_REJECTED",
            "INVENTORY_RELEASED",
            "PAYMENT_CAPTURED",
            "PAYMENT_FAILED",
        ]
        .into_iter()
        .collect()
    );
}

/// Whether the IAM action pattern `pattern` (`*` and `?` wildcards, case-insensitive as IAM
/// compares actions) grants `action`.
fn grants(pattern: &str, action: &str) -> bool {
    fn glob(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob(&p[1..], a) || (!a.is_empty() && glob(p, &a[1..])),
            (Some(b'?'), Some(_)) => glob(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => glob(&p[1..], &a[1..]),
            _ => false,
        }
    }
    glob(pattern.as_bytes(), action.as_bytes())
}

/// Every `Allow` statement anywhere under `v` (inside `Fn::If` branches too), with its actions.
fn allow_statements(v: &serde_json::Value, out: &mut Vec<(Vec<String>, serde_json::Value)>) {
    match v {
        serde_json::Value::Object(o) => {
            if o.get("Effect").and_then(|e| e.as_str()) == Some("Allow") {
                let actions = match &o.get("Action") {
                    Some(serde_json::Value::String(a)) => vec![a.clone()],
                    Some(serde_json::Value::Array(a)) => a
                        .iter()
                        .map(|a| a.as_str().expect("an action is text").to_owned())
                        .collect(),
                    _ => Vec::new(),
                };
                out.push((actions, o.get("Resource").cloned().unwrap_or_default()));
            }
            o.values().for_each(|v| allow_statements(v, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| allow_statements(v, out)),
        _ => {}
    }
}

/// The logical id a `!GetAtt X.Arn` (short or long form) names.
fn get_att_target(v: &serde_json::Value) -> Option<String> {
    match &v["Fn::GetAtt"] {
        serde_json::Value::String(s) => s.split('.').next().map(str::to_owned),
        serde_json::Value::Array(a) => a.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// Only inventory-updater publishes onto the order stream: its role is the one resource in the
/// template that allows `kinesis:PutRecord` or `kinesis:PutRecords` (by name or by wildcard), and
/// only on the order stream.
#[test]
fn only_inventory_updater_may_put_records() {
    let template = load(&template_text()).expect("template.yaml is YAML");
    let resources = template["Resources"].as_object().expect("Resources");
    let mut writers = BTreeSet::new();
    for (logical_id, resource) in resources {
        let mut statements = Vec::new();
        allow_statements(resource, &mut statements);
        for (actions, resource) in statements {
            let puts = actions
                .iter()
                .any(|a| grants(a, "kinesis:PutRecord") || grants(a, "kinesis:PutRecords"));
            if puts {
                writers.insert(logical_id.clone());
                assert_eq!(
                    get_att_target(&resource).as_deref(),
                    Some("OrderStream"),
                    "{logical_id}: records may be put on the order stream only, not {resource}"
                );
            }
        }
    }
    assert_eq!(
        writers,
        names(&["InventoryUpdaterRole"]),
        "the resources that allow putting records on a stream"
    );
    let function = &resources["InventoryUpdaterFunction"]["Properties"];
    assert_eq!(
        get_att_target(&function["Role"]).as_deref(),
        Some("InventoryUpdaterRole")
    );
    assert_eq!(
        function["Environment"]["Variables"]["STREAM_NAME"],
        serde_json::json!({"Ref": "OrderStream"}),
        "inventory-updater publishes onto the stream it reads"
    );
}

/// The read API: a function URL with IAM authentication, no stream, and a role that only reads
/// the status table.
#[test]
fn the_status_api_is_behind_an_iam_function_url() {
    let text = template_text();
    let template = load(&text).expect("template.yaml is YAML");
    let resources = template["Resources"].as_object().expect("Resources");
    let function = &resources["OrderStatusApiFunction"];
    assert_eq!(function["Type"], "AWS::Serverless::Function");
    assert_eq!(
        function["Properties"]["FunctionUrlConfig"]["AuthType"], "AWS_IAM",
        "the status API's function URL authenticates with IAM"
    );
    assert_eq!(
        function["Metadata"]["BuildProperties"]["Binary"],
        "order-status-api"
    );
    // No other function URL in the template is open.
    for (logical_id, resource) in resources {
        let url = &resource["Properties"]["FunctionUrlConfig"];
        if !url.is_null() {
            assert_eq!(
                url["AuthType"], "AWS_IAM",
                "{logical_id}: a function URL without IAM"
            );
        }
    }
    let on = HashMap::from([("FilterAtSource".to_owned(), "true".to_owned())]);
    let mapped: Vec<_> = mappings(&text, &on)
        .expect("the template's mappings read")
        .into_iter()
        .map(|m| m.logical_id)
        .collect();
    assert!(
        !mapped.iter().any(|m| m == "OrderStatusApiFunction"),
        "the read API reads no stream: {mapped:?}"
    );
    let role = get_att_target(&function["Properties"]["Role"]).expect("the API has its own role");
    assert_eq!(role, "OrderStatusApiRole");
    let mut statements = Vec::new();
    // Its policies (the trust policy's sts:AssumeRole is not a grant of the role's).
    allow_statements(&resources[&role]["Properties"]["Policies"], &mut statements);
    let mut data = BTreeSet::new();
    for (actions, resource) in statements {
        for action in actions
            .iter()
            .filter(|a| !a.starts_with("logs:") && !a.starts_with("xray:"))
        {
            assert_eq!(
                get_att_target(&resource).as_deref(),
                Some("OrderStatusTable"),
                "{role}: {action} on {resource}"
            );
            data.insert(action.clone());
        }
    }
    assert_eq!(data, names(&["dynamodb:GetItem", "dynamodb:Query"]));
}

/// The grant check catches a wildcard, and a statement inside a condition's branch.
#[test]
fn wildcard_grants_are_caught() {
    assert!(grants("kinesis:Put*", "kinesis:PutRecords"));
    assert!(grants("*", "kinesis:PutRecord"));
    assert!(grants("Kinesis:putrecord", "kinesis:PutRecord"));
    assert!(!grants("kinesis:PutRecord", "kinesis:PutRecords"));
    assert!(!grants("kinesis:Get*", "kinesis:PutRecord"));
    let role = serde_json::json!({"Fn::If": ["C", {"Effect": "Allow", "Action": "kinesis:*",
        "Resource": {"Fn::GetAtt": "OrderStream.Arn"}}, {"Ref": "AWS::NoValue"}]});
    let mut statements = Vec::new();
    allow_statements(&role, &mut statements);
    assert_eq!(statements.len(), 1);
    assert!(grants(&statements[0].0[0], "kinesis:PutRecords"));
    assert_eq!(
        get_att_target(&statements[0].1).as_deref(),
        Some("OrderStream")
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
