//! Reads `template.yaml`: its parameters, conditions, resources, functions, HttpApi routes and
//! outputs, and resolves the intrinsic functions (`!Ref`, `!GetAtt`, `!Sub`, `!Join`, `!Split`,
//! `!If`) that the local stack needs, against the local resources' names. Conditions
//! (`!Equals`, `!Not`, `!And`, `!Or`, `!Condition`) are evaluated with the parameter values in
//! force, as CloudFormation does at deploy: [`Names::creates`] tells whether a resource with a
//! `Condition` exists.

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
    /// The name of the condition the resource is created under (`Condition:`), if any.
    pub condition: Option<String>,
    pub properties: Value,
    pub metadata: Value,
}

/// An entry of the template's `Outputs`, unresolved.
#[derive(Debug, Clone)]
pub struct Output {
    pub name: String,
    pub condition: Option<String>,
    pub value: Value,
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
                    condition: str_of(body, "Condition").map(str::to_owned),
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

    /// The `Outputs`, in the template's order.
    pub fn outputs(&self) -> Vec<Output> {
        let Some(outputs) = self.root.get("Outputs").and_then(Value::as_mapping) else {
            return Vec::new();
        };
        outputs
            .iter()
            .filter_map(|(name, body)| {
                Some(Output {
                    name: name.as_str()?.to_owned(),
                    condition: str_of(body, "Condition").map(str::to_owned),
                    value: body.get("Value")?.clone(),
                })
            })
            .collect()
    }

    /// Every condition of `Conditions`, evaluated against `names`' parameter values.
    pub fn conditions(&self, names: &Names) -> anyhow::Result<HashMap<String, bool>> {
        let declared: HashMap<String, Value> = self
            .root
            .get("Conditions")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(name, body)| Some((name.as_str()?.to_owned(), body.clone())))
            .collect();
        let mut values = HashMap::new();
        for name in declared.keys() {
            evaluate_condition(name, &declared, names, &mut values, &mut Vec::new())?;
        }
        Ok(values)
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

/// Evaluates the condition `name` (and those it names), memoized in `values`; `path` holds the
/// conditions being evaluated, to refuse a cycle.
fn evaluate_condition(
    name: &str,
    declared: &HashMap<String, Value>,
    names: &Names,
    values: &mut HashMap<String, bool>,
    path: &mut Vec<String>,
) -> anyhow::Result<bool> {
    if let Some(value) = values.get(name) {
        return Ok(*value);
    }
    if path.iter().any(|n| n == name) {
        bail!("condition {name} refers to itself");
    }
    let body = declared
        .get(name)
        .ok_or_else(|| anyhow!("no condition {name} in Conditions"))?;
    path.push(name.to_owned());
    let value = condition_value(body, declared, names, values, path)
        .with_context(|| format!("condition {name}"))?;
    path.pop();
    values.insert(name.to_owned(), value);
    Ok(value)
}

/// The value of a condition function: `!Equals`, `!Not`, `!And`, `!Or`, `!Condition`.
fn condition_value(
    value: &Value,
    declared: &HashMap<String, Value>,
    names: &Names,
    values: &mut HashMap<String, bool>,
    path: &mut Vec<String>,
) -> anyhow::Result<bool> {
    let (function, args) = match value {
        Value::Tagged(tagged) => (
            tagged.tag.to_string().trim_start_matches('!').to_owned(),
            &tagged.value,
        ),
        Value::Mapping(map) if map.len() == 1 => {
            let (key, inner) = map.iter().next().ok_or_else(|| anyhow!("empty mapping"))?;
            let key = key.as_str().unwrap_or_default();
            (key.trim_start_matches("Fn::").to_owned(), inner)
        }
        other => bail!("{other:?} is not a condition function"),
    };
    let items = || {
        args.as_sequence()
            .ok_or_else(|| anyhow!("!{function} takes a list"))
    };
    Ok(match function.as_str() {
        "Equals" => {
            let items = items()?;
            let [a, b] = items.as_slice() else {
                bail!("!Equals takes [a, b]");
            };
            names.resolve(a)? == names.resolve(b)?
        }
        "Not" => {
            let items = items()?;
            let [inner] = items.as_slice() else {
                bail!("!Not takes [condition]");
            };
            !condition_value(inner, declared, names, values, path)?
        }
        "And" | "Or" => {
            let mut outcomes = Vec::new();
            for inner in items()? {
                outcomes.push(condition_value(inner, declared, names, values, path)?);
            }
            if function == "And" {
                outcomes.iter().all(|v| *v)
            } else {
                outcomes.iter().any(|v| *v)
            }
        }
        "Condition" => {
            let name = args
                .as_str()
                .ok_or_else(|| anyhow!("!Condition takes a name"))?;
            evaluate_condition(name, declared, names, values, path)?
        }
        other => bail!("condition function {other} is not supported locally"),
    })
}

/// The local names of the stack's resources, the parameter values in force and the conditions
/// they make true: what the intrinsic functions resolve to.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub stack_name: String,
    pub parameters: HashMap<String, String>,
    /// `!Ref`: table name, queue URL, bucket name, secret name.
    pub refs: HashMap<String, String>,
    /// `!GetAtt X.Attr`, keyed `X.Attr`.
    pub attributes: HashMap<String, String>,
    /// Each condition of the template, evaluated with `parameters` ([`Template::conditions`]).
    pub conditions: HashMap<String, bool>,
}

impl Names {
    /// Whether `resource` exists in a stack deployed with these parameters: it has no
    /// `Condition`, or its condition is true.
    pub fn creates(&self, resource: &Resource) -> bool {
        resource
            .condition
            .as_ref()
            .is_none_or(|c| self.conditions.get(c).copied().unwrap_or(false))
    }

    /// The value of the condition `name`.
    pub fn condition(&self, name: &str) -> anyhow::Result<bool> {
        self.conditions
            .get(name)
            .copied()
            .ok_or_else(|| anyhow!("no condition {name} (were the conditions evaluated?)"))
    }

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
            "If" => {
                let items = args
                    .as_sequence()
                    .filter(|s| s.len() == 3)
                    .ok_or_else(|| anyhow!("!If takes [condition, then, else]"))?;
                let condition = items[0]
                    .as_str()
                    .ok_or_else(|| anyhow!("!If names its condition"))?;
                let chosen = if self.condition(condition)? {
                    &items[1]
                } else {
                    &items[2]
                };
                self.resolve(chosen)
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
            conditions: HashMap::from([("HasThing".into(), false)]),
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
        assert_eq!(
            names
                .resolve(&value("!If [HasThing, !Ref Nope, !Ref AppTable]"))
                .unwrap(),
            "t1-AppTable",
            "only the branch the condition chooses is resolved"
        );
        assert!(names.resolve(&value("!If [Unknown, a, b]")).is_err());
    }

    #[test]
    fn conditions_follow_the_parameters_and_decide_which_resources_exist() {
        let template = Template::parse(
            r#"
Parameters:
  Existing: { Type: String, Default: "" }
  Mode: { Type: String, Default: off }
Conditions:
  Create: !Equals [!Ref Existing, ""]
  Keep: !Not [!Condition Create]
  Both: !And [!Condition Create, !Equals [!Ref Mode, "on"]]
  Either: { "Fn::Or": [{ Condition: Keep }, !Equals [!Ref Mode, "on"]] }
Resources:
  Table: { Type: "AWS::DynamoDB::Table", Condition: Create }
  Other: { Type: "AWS::S3::Bucket" }
Outputs:
  TableName:
    Value: !If [Create, !Ref Table, !Ref Existing]
"#,
        )
        .unwrap();
        let names_with = |overrides: &[(&str, &str)]| {
            let mut names = Names {
                parameters: template.parameters(),
                refs: HashMap::from([("Table".into(), "p-Table".into())]),
                ..Names::default()
            };
            for (k, v) in overrides {
                names.parameters.insert((*k).into(), (*v).into());
            }
            names.conditions = template.conditions(&names).unwrap();
            names
        };
        let output = &template.outputs()[0];
        let defaults = names_with(&[]);
        assert_eq!(
            defaults.conditions,
            HashMap::from([
                ("Create".into(), true),
                ("Keep".into(), false),
                ("Both".into(), false),
                ("Either".into(), false),
            ])
        );
        assert!(defaults.creates(&template.resources["Table"]));
        assert!(defaults.creates(&template.resources["Other"]));
        assert_eq!(defaults.resolve(&output.value).unwrap(), "p-Table");

        let existing = names_with(&[("Existing", "restored"), ("Mode", "on")]);
        assert!(!existing.creates(&template.resources["Table"]));
        assert!(existing.creates(&template.resources["Other"]));
        assert_eq!(existing.resolve(&output.value).unwrap(), "restored");
        assert!(existing.conditions["Keep"] && existing.conditions["Either"]);

        let cyclic = Template::parse(
            "Conditions:\n  A: !Not [!Condition B]\n  B: !Condition A\nResources: {}\n",
        )
        .unwrap();
        assert!(cyclic.conditions(&Names::default()).is_err());
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
