//! Payload validation with zod v3's issue shapes, so front ends written against the seed
//! NestJS gateway (zod + a validation pipe) read wsgate's errors unchanged.

use serde_json::{Value, json};

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

#[cfg(test)]
mod tests {
    use super::*;

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
