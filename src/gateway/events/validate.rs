//! Payload validation with zod v3's issue shapes, so front ends written against the seed
//! NestJS gateway (zod + a validation pipe) read wsgate's errors unchanged.

use serde_json::{Value, json};

pub use crate::gateway::delivery::recover::Recover;
use crate::history::{MAX_EPOCH, Offset, Position};

/// Longest accepted project id, in UTF-16 code units (zod counts `string.length`).
pub const MAX_PROJECT_ID: usize = 256;

/// One validation issue, already in zod's JSON shape (key order included).
pub type Issue = Value;

fn type_name(v: Option<&Value>) -> &'static str {
    match v {
        None => "undefined",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) => "object",
    }
}

fn invalid_type(expected: &str, got: Option<&Value>, path: Value) -> Issue {
    let received = type_name(got);
    let message = if got.is_none() {
        "Required".to_owned()
    } else {
        format!("Expected {expected}, received {received}")
    };
    json!({"code": "invalid_type", "expected": expected, "received": received, "path": path, "message": message})
}

fn is_control(c: char) -> bool {
    c.is_control()
}

/// Validate a `{projectId}` payload (`None`: the client sent no payload at all) and return
/// the project id.
pub fn project_id(payload: Option<&Value>) -> Result<&str, Vec<Issue>> {
    let Some(Value::Object(obj)) = payload else {
        return Err(vec![invalid_type("object", payload, json!([]))]);
    };
    let id = obj.get("projectId");
    let Some(Value::String(id)) = id else {
        return Err(vec![invalid_type("string", id, json!(["projectId"]))]);
    };
    let len = id.encode_utf16().count();
    let mut issues = Vec::new();
    if len < 1 {
        issues.push(json!({"code": "too_small", "minimum": 1, "type": "string", "inclusive": true, "exact": false,
            "message": "String must contain at least 1 character(s)", "path": ["projectId"]}));
    }
    if len > MAX_PROJECT_ID {
        issues.push(json!({"code": "too_big", "maximum": MAX_PROJECT_ID, "type": "string", "inclusive": true, "exact": false,
            "message": format!("String must contain at most {MAX_PROJECT_ID} character(s)"), "path": ["projectId"]}));
    }
    if id.chars().any(is_control) {
        // zod's regex check puts `validation` before `code`; keep its order.
        issues.push(json!({"validation": "regex", "code": "invalid_string",
            "message": "Must not contain control characters", "path": ["projectId"]}));
    }
    if issues.is_empty() {
        Ok(id)
    } else {
        Err(issues)
    }
}

/// Validate a `join_project` payload: `{projectId}` plus the optional recovery fields
/// `recover: boolean` and `since: {epoch: string, offset: "<ms>-<n>"}` (`since` implies
/// `recover`). Issues of every field are reported together, as zod does.
pub fn join(payload: Option<&Value>) -> Result<(&str, Recover), Vec<Issue>> {
    let project = project_id(payload);
    let Some(Value::Object(obj)) = payload else {
        return project.map(|p| (p, Recover::No));
    };
    let mut issues = project.as_ref().err().cloned().unwrap_or_default();
    let recover = match obj.get("recover") {
        None => false,
        Some(Value::Bool(b)) => *b,
        got => {
            issues.push(invalid_type("boolean", got, json!(["recover"])));
            false
        }
    };
    let since = match obj.get("since") {
        None | Some(Value::Null) => None,
        Some(Value::Object(since)) => {
            let epoch = match since.get("epoch") {
                Some(Value::String(e))
                    if !e.is_empty() && e.len() <= MAX_EPOCH && !e.chars().any(is_control) =>
                {
                    Some(e.clone())
                }
                Some(Value::String(_)) => {
                    issues.push(json!({"validation": "regex", "code": "invalid_string",
                        "message": format!("Must be the epoch of a position (1 to {MAX_EPOCH} characters)"),
                        "path": ["since", "epoch"]}));
                    None
                }
                got => {
                    issues.push(invalid_type("string", got, json!(["since", "epoch"])));
                    None
                }
            };
            let offset = match since.get("offset") {
                Some(Value::String(o)) => match o.parse::<Offset>() {
                    Ok(o) => Some(o),
                    Err(()) => {
                        issues.push(json!({"validation": "regex", "code": "invalid_string",
                            "message": "Must be an offset such as 1700000000000-42",
                            "path": ["since", "offset"]}));
                        None
                    }
                },
                got => {
                    issues.push(invalid_type("string", got, json!(["since", "offset"])));
                    None
                }
            };
            epoch
                .zip(offset)
                .map(|(epoch, offset)| Position { epoch, offset })
        }
        got => {
            issues.push(invalid_type("object", got, json!(["since"])));
            None
        }
    };
    if !issues.is_empty() {
        return Err(issues);
    }
    let project = project?;
    Ok(match since {
        Some(p) => (project, Recover::Since(p)),
        None if recover => (project, Recover::Fresh),
        None => (project, Recover::No),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_issues(payload: Value) -> String {
        serde_json::to_string(&join(Some(&payload)).unwrap_err()).unwrap()
    }

    #[test]
    fn recovery_fields_are_optional_and_checked() {
        assert_eq!(
            join(Some(&json!({"projectId": "p"}))),
            Ok(("p", Recover::No))
        );
        assert_eq!(
            join(Some(&json!({"projectId": "p", "recover": false}))),
            Ok(("p", Recover::No))
        );
        assert_eq!(
            join(Some(&json!({"projectId": "p", "recover": true}))),
            Ok(("p", Recover::Fresh))
        );
        assert_eq!(
            join(Some(
                &json!({"projectId": "p", "since": {"epoch": "e1", "offset": "17-4"}})
            )),
            Ok((
                "p",
                Recover::Since(Position {
                    epoch: "e1".into(),
                    offset: Offset { ms: 17, seq: 4 }
                })
            ))
        );
        assert_eq!(
            join_issues(json!({"projectId": "p", "recover": "yes"})),
            r#"[{"code":"invalid_type","expected":"boolean","received":"string","path":["recover"],"message":"Expected boolean, received string"}]"#
        );
        assert_eq!(
            join_issues(json!({"projectId": "p", "since": 5})),
            r#"[{"code":"invalid_type","expected":"object","received":"number","path":["since"],"message":"Expected object, received number"}]"#
        );
        assert_eq!(
            join_issues(json!({"projectId": "p", "since": {"offset": "1-x"}})),
            r#"[{"code":"invalid_type","expected":"string","received":"undefined","path":["since","epoch"],"message":"Required"},{"validation":"regex","code":"invalid_string","message":"Must be an offset such as 1700000000000-42","path":["since","offset"]}]"#
        );
        // Every field's issues together.
        assert_eq!(
            join(Some(&json!({"projectId": 1, "recover": 1})))
                .unwrap_err()
                .len(),
            2
        );
        assert!(
            join_issues(json!({"projectId": "p", "since": {"epoch": "", "offset": "1-1"}}))
                .contains(r#""path":["since","epoch"]"#)
        );
    }

    fn one(payload: Option<Value>) -> String {
        let issues = project_id(payload.as_ref()).unwrap_err();
        assert_eq!(issues.len(), 1);
        serde_json::to_string(&issues[0]).unwrap()
    }

    #[test]
    fn zod_shapes_with_key_order() {
        assert_eq!(
            one(None),
            r#"{"code":"invalid_type","expected":"object","received":"undefined","path":[],"message":"Required"}"#
        );
        assert_eq!(
            one(Some(json!("x"))),
            r#"{"code":"invalid_type","expected":"object","received":"string","path":[],"message":"Expected object, received string"}"#
        );
        assert_eq!(
            one(Some(json!({}))),
            r#"{"code":"invalid_type","expected":"string","received":"undefined","path":["projectId"],"message":"Required"}"#
        );
        for (v, name) in [
            (json!(5), "number"),
            (json!(null), "null"),
            (json!(true), "boolean"),
            (json!({}), "object"),
            (json!([]), "array"),
        ] {
            assert_eq!(
                one(Some(json!({ "projectId": v }))),
                format!(
                    r#"{{"code":"invalid_type","expected":"string","received":"{name}","path":["projectId"],"message":"Expected string, received {name}"}}"#
                )
            );
        }
        assert_eq!(
            one(Some(json!({"projectId": ""}))),
            r#"{"code":"too_small","minimum":1,"type":"string","inclusive":true,"exact":false,"message":"String must contain at least 1 character(s)","path":["projectId"]}"#
        );
        assert!(one(Some(json!({"projectId": "a".repeat(257)}))).contains("too_big"));
        assert_eq!(
            one(Some(json!({"projectId": "a\u{0}b"}))),
            r#"{"validation":"regex","code":"invalid_string","message":"Must not contain control characters","path":["projectId"]}"#
        );
    }

    #[test]
    fn bounds_count_utf16_units() {
        let ok = "é".repeat(256);
        assert_eq!(
            project_id(Some(&json!({ "projectId": ok }))),
            Ok(ok.as_str())
        );
        // 128 astral characters are 256 UTF-16 units; 129 are over.
        let astral = "😀".repeat(129);
        assert!(project_id(Some(&json!({ "projectId": astral }))).is_err());
    }
}
