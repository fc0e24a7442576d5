//! Reads `infra/template.yaml` (the SAM template) for the tests: the function
//! resources, their API routes and environment, and the parameter defaults.
//! CloudFormation short-form tags (`!Ref X`, `!Sub ...`) are kept as tagged
//! values; [`Template::resolve`] turns the simple ones into strings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_yaml_ng::Value;

/// Path of the SAM template in the repository.
pub fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml")
}

/// One `AWS::Serverless::Function`.
#[derive(Debug, Clone)]
pub struct Function {
    /// Logical id, e.g. `ChatFunction`.
    pub logical_id: String,
    /// `Properties.CodeUri`, relative to `infra/`.
    pub code_uri: String,
    /// `Metadata.BuildProperties.Binary`: the cargo binary built for it.
    pub binary: String,
    /// `(METHOD, /path)` of every `Api` event.
    pub routes: Vec<(String, String)>,
    /// Environment: the globals merged with the function's own (its own win).
    pub env: BTreeMap<String, Value>,
    /// The `Api` events that set `ResponseTransferMode: RESPONSE_STREAM`, as `(METHOD, /path)`.
    pub streamed: Vec<(String, String)>,
    /// The raw resource.
    pub resource: Value,
}

/// The parsed template.
pub struct Template {
    /// The whole document.
    pub doc: Value,
}

impl Template {
    /// Loads and parses `infra/template.yaml`.
    pub fn load() -> Self {
        let text = std::fs::read_to_string(path()).expect("read infra/template.yaml");
        let doc = serde_yaml_ng::from_str(&text).expect("infra/template.yaml is YAML");
        Self { doc }
    }

    /// `Resources`.
    pub fn resources(&self) -> &serde_yaml_ng::Mapping {
        self.doc["Resources"]
            .as_mapping()
            .expect("the template has Resources")
    }

    /// A parameter's default, as text.
    pub fn parameter_default(&self, name: &str) -> Option<String> {
        scalar(&self.doc["Parameters"][name]["Default"])
    }

    /// Every `AWS::Serverless::Function`.
    pub fn functions(&self) -> Vec<Function> {
        let globals = self.doc["Globals"]["Function"]["Environment"]["Variables"]
            .as_mapping()
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        for (id, res) in self.resources() {
            if res["Type"].as_str() != Some("AWS::Serverless::Function") {
                continue;
            }
            let props = &res["Properties"];
            let mut env = BTreeMap::new();
            let own = props["Environment"]["Variables"]
                .as_mapping()
                .cloned()
                .unwrap_or_default();
            for (k, v) in globals.iter().chain(own.iter()) {
                env.insert(k.as_str().unwrap().to_owned(), v.clone());
            }
            let mut routes = Vec::new();
            let mut streamed = Vec::new();
            for (_, event) in props["Events"].as_mapping().into_iter().flatten() {
                if event["Type"].as_str() != Some("Api") {
                    continue;
                }
                let p = &event["Properties"];
                let route = (
                    p["Method"].as_str().unwrap().to_uppercase(),
                    p["Path"].as_str().unwrap().to_owned(),
                );
                if p["ResponseTransferMode"].as_str() == Some("RESPONSE_STREAM") {
                    streamed.push(route.clone());
                }
                routes.push(route);
            }
            out.push(Function {
                logical_id: id.as_str().unwrap().to_owned(),
                code_uri: props["CodeUri"].as_str().unwrap_or_default().to_owned(),
                binary: res["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                routes,
                env,
                streamed,
                resource: res.clone(),
            });
        }
        out
    }

    /// Resolves a template value to text: literals as they are, `!Ref` to a
    /// resource through `refs` or to a parameter's default. `None` for
    /// anything else (`!Sub`, `!GetAtt`, ...).
    pub fn resolve(&self, value: &Value, refs: &BTreeMap<&str, String>) -> Option<String> {
        if let Value::Tagged(t) = value {
            if t.tag == "Ref" {
                let name = t.value.as_str()?;
                return refs
                    .get(name)
                    .cloned()
                    .or_else(|| self.parameter_default(name));
            }
            return None;
        }
        scalar(value)
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
