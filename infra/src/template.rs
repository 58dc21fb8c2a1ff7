//! Reads `template.yaml`: its parameters, resources, functions and HttpApi routes, and resolves
//! the intrinsic functions (`!Ref`, `!GetAtt`, `!Sub`, `!Join`, `!Split`) that the local stack
//! needs, against the local resources' names.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use anyhow::{Context as _, anyhow, bail};
use serde_norway::Value;

pub const LOCAL_REGION: &str = "us-east-1";
pub const LOCAL_ACCOUNT: &str = "123456789012";

#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    pub kind: String,
    pub properties: Value,
    pub metadata: Value,
}

/// An HttpApi route and the function that owns it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// `GET`, `POST`, ... or `ANY`.
    pub method: String,
    /// API Gateway syntax: `/api/v1/orders/{reference}/track`, `/{proxy+}`.
    pub path: String,
    /// The owning function's binary (`health`).
    pub function: String,
}

/// A function's `Schedule` event: its expression (unresolved: often a `!Ref` to a parameter)
/// and the JSON it is invoked with.
#[derive(Debug, Clone)]
pub struct ScheduledEvent {
    pub function: String,
    pub name: String,
    pub expression: Value,
    pub input: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
    pub resources: BTreeMap<String, Resource>,
}

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

impl Template {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text)
    }

    /// The project's own `template.yaml`.
    pub fn project() -> anyhow::Result<Self> {
        Self::load(&crate::workspace_root().join("template.yaml"))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let root: Value = serde_norway::from_str(text).context("template.yaml is not YAML")?;
        let mut resources = BTreeMap::new();
        let mapping = root
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| anyhow!("template.yaml has no Resources"))?;
        for (id, body) in mapping {
            let logical_id = id
                .as_str()
                .ok_or_else(|| anyhow!("resource id is not a string"))?;
            let kind = str_of(body, "Type")
                .ok_or_else(|| anyhow!("resource {logical_id} has no Type"))?
                .to_owned();
            resources.insert(
                logical_id.to_owned(),
                Resource {
                    logical_id: logical_id.to_owned(),
                    kind,
                    properties: body.get("Properties").cloned().unwrap_or(Value::Null),
                    metadata: body.get("Metadata").cloned().unwrap_or(Value::Null),
                },
            );
        }
        Ok(Self { root, resources })
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources.values().filter(move |r| r.kind == kind)
    }

    /// Parameter defaults.
    pub fn parameters(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        if let Some(params) = self.root.get("Parameters").and_then(Value::as_mapping) {
            for (name, spec) in params {
                if let (Some(name), Some(default)) = (name.as_str(), spec.get("Default")) {
                    let default = match default {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => continue,
                    };
                    out.insert(name.to_owned(), default);
                }
            }
        }
        out
    }

    /// The binary a function resource builds (cargo-lambda's `BuildProperties.Binary`).
    pub fn binary_of(&self, function: &Resource) -> anyhow::Result<String> {
        function
            .metadata
            .get("BuildProperties")
            .and_then(|p| str_of(p, "Binary"))
            .map(str::to_owned)
            .ok_or_else(|| {
                anyhow!(
                    "function {} has no Metadata.BuildProperties.Binary",
                    function.logical_id
                )
            })
    }

    /// The functions: (logical id, binary).
    pub fn functions(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.of_kind("AWS::Serverless::Function")
            .map(|f| Ok((f.logical_id.clone(), self.binary_of(f)?)))
            .collect()
    }

    /// Every `Schedule` event of every function: what the local scheduler runs.
    pub fn schedules(&self) -> anyhow::Result<Vec<ScheduledEvent>> {
        let mut out = Vec::new();
        for function in self.of_kind("AWS::Serverless::Function") {
            let Some(events) = function
                .properties
                .get("Events")
                .and_then(Value::as_mapping)
            else {
                continue;
            };
            for (name, event) in events {
                if str_of(event, "Type") != Some("Schedule") {
                    continue;
                }
                let props = event.get("Properties").unwrap_or(&Value::Null);
                let expression = props.get("Schedule").cloned().ok_or_else(|| {
                    anyhow!(
                        "Schedule event {name:?} of {} needs Schedule",
                        function.logical_id
                    )
                })?;
                out.push(ScheduledEvent {
                    function: self.binary_of(function)?,
                    name: name.as_str().unwrap_or_default().to_owned(),
                    expression,
                    input: str_of(props, "Input").map(str::to_owned),
                });
            }
        }
        Ok(out)
    }

    /// Every HttpApi route of every function.
    pub fn http_routes(&self) -> anyhow::Result<Vec<Route>> {
        let mut routes = Vec::new();
        for function in self.of_kind("AWS::Serverless::Function") {
            let Some(events) = function
                .properties
                .get("Events")
                .and_then(Value::as_mapping)
            else {
                continue;
            };
            for (name, event) in events {
                if str_of(event, "Type") != Some("HttpApi") {
                    continue;
                }
                let props = event.get("Properties").unwrap_or(&Value::Null);
                let (Some(method), Some(path)) = (str_of(props, "Method"), str_of(props, "Path"))
                else {
                    bail!(
                        "HttpApi event {name:?} of {} needs Method and Path",
                        function.logical_id
                    );
                };
                routes.push(Route {
                    method: method.to_ascii_uppercase(),
                    path: path.to_owned(),
                    function: self.binary_of(function)?,
                });
            }
        }
        routes.sort();
        Ok(routes)
    }

    /// A function's environment: the Globals' variables overlaid with its own, unresolved.
    pub fn function_environment(&self, logical_id: &str) -> BTreeMap<String, Value> {
        let mut vars = BTreeMap::new();
        let globals = self
            .root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(|f| f.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping);
        let own = self
            .resources
            .get(logical_id)
            .and_then(|r| r.properties.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Value::as_mapping);
        for mapping in [globals, own].into_iter().flatten() {
            for (key, value) in mapping {
                if let Some(key) = key.as_str() {
                    vars.insert(key.to_owned(), value.clone());
                }
            }
        }
        vars
    }
}

/// The local names of the stack's resources, and the parameter values in force: what the
/// intrinsic functions resolve to.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub stack_name: String,
    pub parameters: HashMap<String, String>,
    /// `!Ref`: table name, queue URL, bucket name, secret name.
    pub refs: HashMap<String, String>,
    /// `!GetAtt X.Attr`, keyed `X.Attr`.
    pub attributes: HashMap<String, String>,
}

impl Names {
    fn pseudo(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::Region" => LOCAL_REGION.to_owned(),
            "AWS::AccountId" => LOCAL_ACCOUNT.to_owned(),
            "AWS::StackName" => self.stack_name.clone(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            _ => return None,
        })
    }

    fn reference(&self, name: &str) -> anyhow::Result<String> {
        self.pseudo(name)
            .or_else(|| self.parameters.get(name).cloned())
            .or_else(|| self.refs.get(name).cloned())
            .ok_or_else(|| anyhow!("!Ref {name}: no such parameter or local resource"))
    }

    fn attribute(&self, spec: &str) -> anyhow::Result<String> {
        self.attributes
            .get(spec)
            .cloned()
            .ok_or_else(|| anyhow!("!GetAtt {spec}: not known locally"))
    }

    /// Resolves a template value to a string.
    pub fn resolve(&self, value: &Value) -> anyhow::Result<String> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                self.intrinsic(tag.trim_start_matches('!'), &tagged.value)
            }
            Value::Mapping(map) if map.len() == 1 => {
                let (key, inner) = map.iter().next().ok_or_else(|| anyhow!("empty mapping"))?;
                let key = key.as_str().unwrap_or_default();
                self.intrinsic(key.trim_start_matches("Fn::"), inner)
            }
            other => bail!("cannot resolve {other:?} to a string"),
        }
    }

    /// Resolves a value that may be a list (`!Split`) to its items.
    pub fn resolve_list(&self, value: &Value) -> anyhow::Result<Vec<String>> {
        match value {
            Value::Sequence(items) => items.iter().map(|v| self.resolve(v)).collect(),
            Value::Tagged(tagged) if tagged.tag == "Split" => self.split(&tagged.value),
            other => Ok(vec![self.resolve(other)?]),
        }
    }

    fn split(&self, args: &Value) -> anyhow::Result<Vec<String>> {
        let items = args
            .as_sequence()
            .filter(|s| s.len() == 2)
            .ok_or_else(|| anyhow!("!Split takes [sep, text]"))?;
        let sep = self.resolve(&items[0])?;
        Ok(self
            .resolve(&items[1])?
            .split(sep.as_str())
            .map(str::to_owned)
            .collect())
    }

    fn intrinsic(&self, name: &str, args: &Value) -> anyhow::Result<String> {
        match name {
            "Ref" => self.reference(args.as_str().ok_or_else(|| anyhow!("!Ref takes a name"))?),
            "GetAtt" => match args {
                Value::String(spec) => self.attribute(spec),
                Value::Sequence(parts) => {
                    let parts: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
                    self.attribute(&parts.join("."))
                }
                _ => bail!("!GetAtt takes Resource.Attribute"),
            },
            "Sub" => {
                let (text, vars) = match args {
                    Value::String(text) => (text.clone(), HashMap::new()),
                    Value::Sequence(items) if items.len() == 2 => {
                        let text = items[0].as_str().unwrap_or_default().to_owned();
                        let mut vars = HashMap::new();
                        if let Some(map) = items[1].as_mapping() {
                            for (k, v) in map {
                                vars.insert(
                                    k.as_str().unwrap_or_default().to_owned(),
                                    self.resolve(v)?,
                                );
                            }
                        }
                        (text, vars)
                    }
                    _ => bail!("!Sub takes a string or [string, vars]"),
                };
                self.substitute(&text, &vars)
            }
            "Join" => {
                let items = args
                    .as_sequence()
                    .filter(|s| s.len() == 2)
                    .ok_or_else(|| anyhow!("!Join takes [sep, list]"))?;
                let sep = self.resolve(&items[0])?;
                Ok(self.resolve_list(&items[1])?.join(&sep))
            }
            other => bail!("intrinsic function {other} is not supported locally"),
        }
    }

    fn substitute(&self, text: &str, vars: &HashMap<String, String>) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| anyhow!("unclosed ${{ in !Sub"))?
                + start;
            let name = &rest[start + 2..end];
            let value = match vars.get(name) {
                Some(v) => v.clone(),
                None if name.contains('.') && !name.starts_with("AWS::") => self.attribute(name)?,
                None => self.reference(name)?,
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intrinsics_resolve_against_local_names() {
        let names = Names {
            stack_name: "t1".into(),
            parameters: HashMap::from([("Origins".into(), "https://a,https://b".into())]),
            refs: HashMap::from([("AppTable".into(), "t1-AppTable".into())]),
            attributes: HashMap::from([("AppTable.Arn".into(), "arn:t".into())]),
        };
        let value = |yaml: &str| -> Value { serde_norway::from_str(yaml).unwrap() };
        assert_eq!(
            names.resolve(&value("!Ref AppTable")).unwrap(),
            "t1-AppTable"
        );
        assert_eq!(
            names.resolve(&value("!GetAtt AppTable.Arn")).unwrap(),
            "arn:t"
        );
        assert_eq!(
            names.resolve(&value("{ Ref: AppTable }")).unwrap(),
            "t1-AppTable"
        );
        assert_eq!(
            names
                .resolve(&value("!Sub /aws/${AWS::StackName}/${AppTable}"))
                .unwrap(),
            "/aws/t1/t1-AppTable"
        );
        assert_eq!(
            names
                .resolve_list(&value(r#"!Split [",", !Ref Origins]"#))
                .unwrap(),
            ["https://a", "https://b"]
        );
        assert!(names.resolve(&value("!Ref Nope")).is_err());
    }

    #[test]
    fn the_project_template_declares_functions_and_routes() {
        let template = Template::project().unwrap();
        let routes = template.http_routes().unwrap();
        assert!(routes.iter().any(|r| r.method == "GET"
            && r.path == "/api/v1/health/live"
            && r.function == "health"));
        assert!(template.of_kind("AWS::DynamoDB::Table").count() >= 1);
    }
}
