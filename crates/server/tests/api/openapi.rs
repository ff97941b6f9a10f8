//! `/api/v1/openapi.json`: the management API's OpenAPI document, generated from the handlers.
//! Every operation it lists exists and answers with a status it documents, and the answers'
//! bodies have the documented shape.

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;

const ADMIN_PASSWORD: &str = "admin-secret-1";

/// A `$ref` to `#/components/schemas/X`, resolved; other schemas as they are.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or_default();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Checks `value` against the (small) subset of JSON Schema the document uses: objects with
/// `required` and `properties`, arrays with `items`, and the scalar types.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(doc, schema);
    if let Some(variants) = schema["oneOf"].as_array() {
        // Option<T>: null, or T.
        if value.is_null() {
            return;
        }
        let real: Vec<&Value> = variants.iter().filter(|v| v["type"] != "null").collect();
        assert_eq!(real.len(), 1, "{at}: {schema}");
        return conforms(doc, real[0], value, at);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return,
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    assert!(
        types.contains(&kind) || (kind == "integer" && types.contains(&"number")),
        "{at}: {value} is not {types:?}"
    );
    match value {
        Value::Object(map) => {
            let properties = schema["properties"].as_object().expect("properties");
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().expect("name");
                assert!(map.contains_key(name), "{at}: missing {name} in {value}");
            }
            for (key, v) in map {
                let property = properties
                    .get(key)
                    .unwrap_or_else(|| panic!("{at}: undocumented field {key} in {value}"));
                conforms(doc, property, v, &format!("{at}.{key}"));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                conforms(doc, &schema["items"], item, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_describes_every_route_as_it_answers() {
    let app = TestApp::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin_password = ADMIN_PASSWORD.into();
    })
    .await;
    // Public, and JSON.
    let r = app.get("/api/v1/openapi.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "application/json");
    let doc: Value = r.json().await.expect("json");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "berth management API");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");

    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            operations.push((path.clone(), method.clone(), operation.clone()));
        }
    }
    // Everything the management API does, listed.
    for expected in [
        ("/api/v1/users", "get"),
        ("/api/v1/users", "post"),
        ("/api/v1/users/{name}", "delete"),
        ("/api/v1/users/{name}/password", "put"),
        ("/api/v1/projects", "get"),
        ("/api/v1/projects", "post"),
        ("/api/v1/projects/{name}", "patch"),
        ("/api/v1/projects/{name}", "delete"),
        ("/api/v1/projects/{name}/members", "get"),
        ("/api/v1/projects/{name}/members/{user}", "put"),
        ("/api/v1/projects/{name}/members/{user}", "delete"),
        ("/api/v1/robots", "get"),
        ("/api/v1/robots", "post"),
        ("/api/v1/robots/{name}", "patch"),
        ("/api/v1/robots/{name}", "delete"),
        ("/api/v1/audit", "get"),
        ("/api/v1/signup", "post"),
        ("/api/v1/gc", "post"),
        ("/api/v1/projects/{name}/usage", "get"),
        ("/api/v1/projects/{name}/quota", "put"),
        ("/api/v1/projects/{name}/immutable-tags", "get"),
        ("/api/v1/projects/{name}/immutable-tags", "put"),
        ("/api/v1/projects/{name}/retention", "get"),
        ("/api/v1/projects/{name}/retention", "put"),
        ("/api/v1/projects/{name}/retention/run", "post"),
    ] {
        assert!(
            operations
                .iter()
                .any(|(p, m, _)| (p.as_str(), m.as_str()) == expected),
            "{expected:?} is not in the document"
        );
    }
    assert_eq!(operations.len(), 25, "a new operation? list it above");

    // Each operation, called without credentials, exists and answers a documented status with
    // the documented error body.
    let concrete = |path: &str| path.replace("{name}", "team").replace("{user}", "bob");
    for (path, method, operation) in &operations {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let r = reqwest::Client::new()
            .request(method.clone(), app.url(&concrete(path)))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("request");
        let status = r.status();
        let documented = &operation["responses"][status.as_str()];
        assert!(
            documented.is_object(),
            "{method} {path}: {status} is not documented"
        );
        let body: Value = r.json().await.expect("error body");
        let schema = &documented["content"]["application/json"]["schema"];
        conforms(&doc, schema, &body, &format!("{method} {path} {status}"));
    }

    // As the administrator, what the lists answer has the documented shape.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    let as_admin = |method: Method, path: &str| {
        reqwest::Client::new()
            .request(method, app.url(path))
            .header("authorization", format!("Basic {basic}"))
    };
    let r = as_admin(Method::POST, "/api/v1/projects")
        .header("content-type", "application/json")
        .body(r#"{"name":"team","public":true}"#)
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.expect("json");
    let post = &doc["paths"]["/api/v1/projects"]["post"]["responses"]["201"];
    conforms(
        &doc,
        &post["content"]["application/json"]["schema"],
        &created,
        "created project",
    );
    for path in [
        "/api/v1/users",
        "/api/v1/projects",
        "/api/v1/projects/team/members",
        "/api/v1/robots",
        "/api/v1/audit",
    ] {
        let r = as_admin(Method::GET, path).send().await.expect("list");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let body: Value = r.json().await.expect("json");
        assert!(
            body.as_array().is_some_and(|a| !a.is_empty()) || path.ends_with("robots"),
            "{path}: {body}"
        );
        let template = if path.contains("/team/") {
            "/api/v1/projects/{name}/members"
        } else {
            path
        };
        let schema = &doc["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        conforms(&doc, schema, &body, path);
    }
}
