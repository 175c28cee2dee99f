//! Kafka's transforms and predicates, each as its documentation and source say:
//!
//! - `InsertField$Key|$Value`: adds `topic.field`, `partition.field`, `offset.field`
//!   (sink records only), `timestamp.field` and `static.field`/`static.value` to a struct
//!   (extending its schema) or a schemaless map; a name ending in `!` is required, in `?`
//!   (the default) optional. Tombstones pass unchanged.
//! - `ReplaceField$Key|$Value`: keeps `include` (all when empty), drops `exclude`, renames
//!   by `renames` (`old:new,...`).
//! - `MaskField$Key|$Value`: sets `fields` to their type's zero (0, false, "", empty
//!   array or map), or to `replacement` converted to the field's type.
//! - `ValueToKey`: the key becomes a struct (or map) of the value's `fields`.
//! - `ExtractField$Key|$Value`: the key or value becomes its `field`.
//! - `RegexRouter`: a topic wholly matching `regex` becomes `replacement` (`$1` groups).
//! - `TimestampRouter`: the topic becomes `topic.format` (default `${topic}-${timestamp}`)
//!   with the record's timestamp in `timestamp.format` (Java's `SimpleDateFormat`,
//!   default `yyyyMMdd`, UTC).
//! - `Filter`: drops the record (use it with a predicate).
//! - Predicates `TopicNameMatches` (`pattern`, whole topic), `HasHeaderKey` (`name`),
//!   `RecordIsTombstone` (null value).

use regex::Regex;

use crate::config::{get_list, Config};
use crate::data::{ConnectRecord, Field, Schema, SchemaType, Value};
use crate::error::ConnectError;

use super::{Predicate, Transformation};

const T: &str = "org.apache.kafka.connect.transforms.";
const P: &str = "org.apache.kafka.connect.transforms.predicates.";

/// Every transform's class name, as `GET /connector-plugins?connectorsOnly=false` lists them.
pub const TRANSFORMS: &[&str] = &[
    "org.apache.kafka.connect.transforms.ExtractField$Key",
    "org.apache.kafka.connect.transforms.ExtractField$Value",
    "org.apache.kafka.connect.transforms.Filter",
    "org.apache.kafka.connect.transforms.InsertField$Key",
    "org.apache.kafka.connect.transforms.InsertField$Value",
    "org.apache.kafka.connect.transforms.MaskField$Key",
    "org.apache.kafka.connect.transforms.MaskField$Value",
    "org.apache.kafka.connect.transforms.RegexRouter",
    "org.apache.kafka.connect.transforms.ReplaceField$Key",
    "org.apache.kafka.connect.transforms.ReplaceField$Value",
    "org.apache.kafka.connect.transforms.TimestampRouter",
    "org.apache.kafka.connect.transforms.ValueToKey",
];
/// Every predicate's class name.
pub const PREDICATES: &[&str] = &[
    "org.apache.kafka.connect.transforms.predicates.HasHeaderKey",
    "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone",
    "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
];

fn config_error(msg: impl Into<String>) -> ConnectError {
    ConnectError::Config(msg.into())
}

fn required<'a>(settings: &'a Config, key: &str) -> Result<&'a str, ConnectError> {
    match settings.get(key).map(|s| s.trim()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(config_error(format!(
            "Missing required configuration \"{key}\" which has no default value."
        ))),
    }
}

/// Key or value: which part of the record a `$Key` or `$Value` transform works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Key,
    Value,
}

impl Part {
    fn get(self, r: &ConnectRecord) -> (Option<&Schema>, &Value) {
        match self {
            Part::Key => (r.key_schema.as_ref(), &r.key),
            Part::Value => (r.value_schema.as_ref(), &r.value),
        }
    }

    fn set(self, r: &mut ConnectRecord, schema: Option<Schema>, value: Value) {
        match self {
            Part::Key => {
                r.key_schema = schema;
                r.key = value;
            }
            Part::Value => {
                r.value_schema = schema;
                r.value = value;
            }
        }
    }
}

/// The transform a class name names (Kafka's full name or its simple name).
pub fn transform_for(
    class: &str,
    settings: &Config,
) -> Result<Box<dyn Transformation>, ConnectError> {
    let simple = class.trim().strip_prefix(T).unwrap_or(class.trim());
    let (name, part) = match simple.split_once('$') {
        Some((n, "Key")) => (n, Some(Part::Key)),
        Some((n, "Value")) => (n, Some(Part::Value)),
        Some(_) => return Err(config_error(format!("Class {class} could not be found."))),
        None => (simple, None),
    };
    let need_part = || {
        part.ok_or_else(|| {
            config_error(format!(
                "Class {class} could not be found: use {class}$Key or {class}$Value"
            ))
        })
    };
    Ok(match name {
        "InsertField" => Box::new(InsertField::new(need_part()?, settings)?),
        "ReplaceField" => Box::new(ReplaceField::new(need_part()?, settings)?),
        "MaskField" => Box::new(MaskField::new(need_part()?, settings)?),
        "ExtractField" => Box::new(ExtractField {
            part: need_part()?,
            field: required(settings, "field")?.to_string(),
        }),
        "ValueToKey" if part.is_none() => {
            let fields = get_list(settings, "fields");
            if fields.is_empty() {
                return Err(config_error(
                    "Missing required configuration \"fields\" which has no default value.",
                ));
            }
            Box::new(ValueToKey { fields })
        }
        "RegexRouter" if part.is_none() => {
            let regex = full_match(required(settings, "regex")?)?;
            let replacement =
                java_replacement(required(settings, "replacement")?, regex.captures_len() - 1);
            Box::new(RegexRouter { regex, replacement })
        }
        "TimestampRouter" if part.is_none() => Box::new(TimestampRouter {
            topic_format: settings
                .get("topic.format")
                .cloned()
                .unwrap_or_else(|| "${topic}-${timestamp}".into()),
            timestamp_format: settings
                .get("timestamp.format")
                .cloned()
                .unwrap_or_else(|| "yyyyMMdd".into()),
        }),
        "Filter" if part.is_none() => Box::new(Filter),
        _ => return Err(config_error(format!("Class {class} could not be found."))),
    })
}

/// The predicate a class name names.
pub fn predicate_for(class: &str, settings: &Config) -> Result<Box<dyn Predicate>, ConnectError> {
    let simple = class.trim().strip_prefix(P).unwrap_or(class.trim());
    Ok(match simple {
        "TopicNameMatches" => Box::new(TopicNameMatches {
            pattern: full_match(required(settings, "pattern")?)?,
        }),
        "HasHeaderKey" => Box::new(HasHeaderKey {
            name: required(settings, "name")?.to_string(),
        }),
        "RecordIsTombstone" => Box::new(RecordIsTombstone),
        _ => return Err(config_error(format!("Class {class} could not be found."))),
    })
}

/// A pattern matched against the whole string, as Java's `Matcher.matches`.
fn full_match(pattern: &str) -> Result<Regex, ConnectError> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| config_error(format!("Invalid regex {pattern}: {e}")))
}

/// Java's replacement syntax (`$1`, `${name}`, `\$`) in the regex crate's: a group
/// number takes further digits only while it stays a group, as in Java's `Matcher`.
fn java_replacement(java: &str, groups: usize) -> String {
    let chars: Vec<char> = java.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                if chars[i + 1] == '$' {
                    out.push_str("$$");
                } else {
                    out.push(chars[i + 1]);
                }
                i += 2;
            }
            '$' if chars.get(i + 1).is_some_and(char::is_ascii_digit) => {
                let mut n = chars[i + 1].to_digit(10).unwrap_or(0) as usize;
                i += 2;
                while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
                    let longer = n * 10 + d as usize;
                    if longer > groups {
                        break;
                    }
                    n = longer;
                    i += 1;
                }
                out.push_str(&format!("${{{n}}}"));
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// A field to insert and whether it is optional (`?`, the default) or required (`!`).
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    optional: bool,
}

impl Spec {
    fn parse(settings: &Config, key: &str) -> Option<Spec> {
        let s = settings.get(key)?.trim();
        if s.is_empty() {
            return None;
        }
        Some(match (s.strip_suffix('?'), s.strip_suffix('!')) {
            (Some(n), _) => Spec {
                name: n.to_string(),
                optional: true,
            },
            (_, Some(n)) => Spec {
                name: n.to_string(),
                optional: false,
            },
            _ => Spec {
                name: s.to_string(),
                optional: true,
            },
        })
    }
}

struct InsertField {
    part: Part,
    topic: Option<Spec>,
    partition: Option<Spec>,
    offset: Option<Spec>,
    timestamp: Option<Spec>,
    static_field: Option<Spec>,
    static_value: Option<String>,
}

impl InsertField {
    fn new(part: Part, settings: &Config) -> Result<Self, ConnectError> {
        let t = InsertField {
            part,
            topic: Spec::parse(settings, "topic.field"),
            partition: Spec::parse(settings, "partition.field"),
            offset: Spec::parse(settings, "offset.field"),
            timestamp: Spec::parse(settings, "timestamp.field"),
            static_field: Spec::parse(settings, "static.field"),
            static_value: settings.get("static.value").cloned(),
        };
        if t.topic.is_none()
            && t.partition.is_none()
            && t.offset.is_none()
            && t.timestamp.is_none()
            && t.static_field.is_none()
        {
            return Err(config_error("No field insertion configured"));
        }
        if t.static_field.is_some() && t.static_value.is_none() {
            return Err(config_error(
                "No value specified for static field: static.field",
            ));
        }
        Ok(t)
    }

    fn insertions(&self, r: &ConnectRecord) -> Result<Vec<(Spec, Schema, Value)>, ConnectError> {
        let mut out = Vec::new();
        let optional = |s: &Spec, schema: Schema| {
            if s.optional {
                schema.optional()
            } else {
                schema
            }
        };
        if let Some(s) = &self.topic {
            out.push((
                s.clone(),
                optional(s, Schema::string()),
                Value::String(r.topic.clone()),
            ));
        }
        if let Some(s) = &self.partition {
            let v = r.kafka_partition.map(Value::Int32).unwrap_or(Value::Null);
            out.push((s.clone(), optional(s, Schema::new(SchemaType::Int32)), v));
        }
        if let Some(s) = &self.offset {
            let offset = r.kafka_offset.ok_or_else(|| {
                ConnectError::Data(
                    "Only SinkRecord supported for [field insertion], found: SourceRecord".into(),
                )
            })?;
            out.push((
                s.clone(),
                optional(s, Schema::new(SchemaType::Int64)),
                Value::Int64(offset),
            ));
        }
        if let Some(s) = &self.timestamp {
            let mut schema = Schema::optional_timestamp();
            schema.optional = s.optional;
            let v = r.timestamp_ms.map(Value::Int64).unwrap_or(Value::Null);
            out.push((s.clone(), schema, v));
        }
        if let (Some(s), Some(v)) = (&self.static_field, &self.static_value) {
            out.push((
                s.clone(),
                optional(s, Schema::string()),
                Value::String(v.clone()),
            ));
        }
        Ok(out)
    }
}

impl Transformation for InsertField {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let (schema, value) = self.part.get(&r);
        if value.is_null() {
            return Ok(Some(r));
        }
        let insertions = self.insertions(&r)?;
        let (schema, value) = (schema.cloned(), value.clone());
        match (schema, value) {
            (None, Value::Map(mut entries)) => {
                for (spec, _, v) in insertions {
                    entries.retain(|(k, _)| !matches!(k, Value::String(s) if *s == spec.name));
                    entries.push((Value::String(spec.name), v));
                }
                self.part.set(&mut r, None, Value::Map(entries));
            }
            (Some(schema), Value::Struct(mut fields)) if schema.schema_type == SchemaType::Struct => {
                let mut new_schema = schema.clone();
                for (spec, field_schema, v) in insertions {
                    new_schema.fields.push(Field { name: spec.name.clone(), schema: field_schema });
                    fields.push((spec.name, v));
                }
                self.part.set(&mut r, Some(new_schema), Value::Struct(fields));
            }
            (None, _) => return Err(ConnectError::Data("Only Map objects supported in absence of schema for [field insertion], found: not a map".into())),
            (Some(_), _) => return Err(ConnectError::Data("Only Struct objects supported for [field insertion]".into())),
        }
        Ok(Some(r))
    }
}

struct ReplaceField {
    part: Part,
    include: Vec<String>,
    exclude: Vec<String>,
    renames: Vec<(String, String)>,
}

impl ReplaceField {
    fn new(part: Part, settings: &Config) -> Result<Self, ConnectError> {
        let renames = get_list(settings, "renames")
            .into_iter()
            .map(|pair| match pair.split_once(':') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() => {
                    Ok((a.to_string(), b.to_string()))
                }
                _ => Err(config_error(format!("Invalid rename mapping: {pair}"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(ReplaceField {
            part,
            include: get_list(settings, "include"),
            exclude: get_list(settings, "exclude"),
            renames,
        })
    }

    fn keeps(&self, name: &str) -> bool {
        !self.exclude.iter().any(|e| e == name)
            && (self.include.is_empty() || self.include.iter().any(|i| i == name))
    }

    fn renamed(&self, name: &str) -> String {
        self.renames
            .iter()
            .find(|(a, _)| a == name)
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| name.to_string())
    }
}

impl Transformation for ReplaceField {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let (schema, value) = self.part.get(&r);
        if value.is_null() {
            return Ok(Some(r));
        }
        let (schema, value) = (schema.cloned(), value.clone());
        match (schema, value) {
            (None, Value::Map(entries)) => {
                let kept = entries
                    .into_iter()
                    .filter_map(|(k, v)| match k {
                        Value::String(name) if self.keeps(&name) => {
                            Some((Value::String(self.renamed(&name)), v))
                        }
                        Value::String(_) => None,
                        other => Some((other, v)),
                    })
                    .collect();
                self.part.set(&mut r, None, Value::Map(kept));
            }
            (Some(schema), Value::Struct(fields)) if schema.schema_type == SchemaType::Struct => {
                let mut new_schema = schema.clone();
                new_schema.fields = schema
                    .fields
                    .iter()
                    .filter(|f| self.keeps(&f.name))
                    .map(|f| Field {
                        name: self.renamed(&f.name),
                        schema: f.schema.clone(),
                    })
                    .collect();
                let kept = fields
                    .into_iter()
                    .filter(|(n, _)| self.keeps(n))
                    .map(|(n, v)| (self.renamed(&n), v))
                    .collect();
                self.part.set(&mut r, Some(new_schema), Value::Struct(kept));
            }
            _ => {
                return Err(ConnectError::Data(
                    "Only Struct or Map objects supported for [field replacement]".into(),
                ))
            }
        }
        Ok(Some(r))
    }
}

struct MaskField {
    part: Part,
    fields: Vec<String>,
    replacement: Option<String>,
}

impl MaskField {
    fn new(part: Part, settings: &Config) -> Result<Self, ConnectError> {
        let fields = get_list(settings, "fields");
        if fields.is_empty() {
            return Err(config_error(
                "Missing required configuration \"fields\" which has no default value.",
            ));
        }
        let replacement = settings.get("replacement").cloned();
        if replacement.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return Err(config_error(
                "Invalid value for configuration replacement: String must be non-empty",
            ));
        }
        Ok(MaskField {
            part,
            fields,
            replacement,
        })
    }

    fn masked(&self, v: &Value) -> Result<Value, ConnectError> {
        let bad = |what: &str| {
            ConnectError::Data(format!(
                "Unable to convert {} to {what}",
                self.replacement.as_deref().unwrap_or_default()
            ))
        };
        Ok(match (&self.replacement, v) {
            (_, Value::Null) => Value::Null,
            (None, Value::Boolean(_)) => Value::Boolean(false),
            (None, Value::Int8(_)) => Value::Int8(0),
            (None, Value::Int16(_)) => Value::Int16(0),
            (None, Value::Int32(_)) => Value::Int32(0),
            (None, Value::Int64(_)) => Value::Int64(0),
            (None, Value::Float32(_)) => Value::Float32(0.0),
            (None, Value::Float64(_)) => Value::Float64(0.0),
            (None, Value::String(_)) => Value::String(String::new()),
            (None, Value::Array(_)) => Value::Array(Vec::new()),
            (None, Value::Map(_)) => Value::Map(Vec::new()),
            (Some(r), Value::Int8(_)) => Value::Int8(r.trim().parse().map_err(|_| bad("number"))?),
            (Some(r), Value::Int16(_)) => {
                Value::Int16(r.trim().parse().map_err(|_| bad("number"))?)
            }
            (Some(r), Value::Int32(_)) => {
                Value::Int32(r.trim().parse().map_err(|_| bad("number"))?)
            }
            (Some(r), Value::Int64(_)) => {
                Value::Int64(r.trim().parse().map_err(|_| bad("number"))?)
            }
            (Some(r), Value::Float32(_)) => {
                Value::Float32(r.trim().parse().map_err(|_| bad("number"))?)
            }
            (Some(r), Value::Float64(_)) => {
                Value::Float64(r.trim().parse().map_err(|_| bad("number"))?)
            }
            (Some(r), Value::String(_)) => Value::String(r.clone()),
            (Some(_), _) => {
                return Err(ConnectError::Data(
                    "Cannot mask value of this type with custom replacement.".into(),
                ))
            }
            (None, _) => return Err(ConnectError::Data("Cannot mask value of this type".into())),
        })
    }
}

impl Transformation for MaskField {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let (schema, value) = self.part.get(&r);
        if value.is_null() {
            return Ok(Some(r));
        }
        let (schema, value) = (schema.cloned(), value.clone());
        let masked = match value {
            Value::Map(entries) if schema.is_none() => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let hit = matches!(&k, Value::String(n) if self.fields.contains(n));
                        Ok((k, if hit { self.masked(&v)? } else { v }))
                    })
                    .collect::<Result<_, ConnectError>>()?,
            ),
            Value::Struct(fields) => Value::Struct(
                fields
                    .into_iter()
                    .map(|(n, v)| {
                        let hit = self.fields.contains(&n);
                        Ok((n, if hit { self.masked(&v)? } else { v }))
                    })
                    .collect::<Result<_, ConnectError>>()?,
            ),
            _ => {
                return Err(ConnectError::Data(
                    "Only Struct or Map objects supported for [masking fields]".into(),
                ))
            }
        };
        self.part.set(&mut r, schema, masked);
        Ok(Some(r))
    }
}

struct ExtractField {
    part: Part,
    field: String,
}

impl Transformation for ExtractField {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let (schema, value) = self.part.get(&r);
        let (new_schema, new_value) = match (schema, value) {
            (None, Value::Null) => (None, Value::Null),
            (None, Value::Map(_)) => (None, value.get(&self.field).cloned().unwrap_or(Value::Null)),
            (None, _) => {
                return Err(ConnectError::Data(
                    "Only Map objects supported in absence of schema for [field extraction]".into(),
                ))
            }
            (Some(s), v) => {
                let field = s
                    .field(&self.field)
                    .ok_or_else(|| ConnectError::Data(format!("Unknown field: {}", self.field)))?;
                (
                    Some(field.schema.clone()),
                    v.get(&self.field).cloned().unwrap_or(Value::Null),
                )
            }
        };
        self.part.set(&mut r, new_schema, new_value);
        Ok(Some(r))
    }
}

struct ValueToKey {
    fields: Vec<String>,
}

impl Transformation for ValueToKey {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        match (&r.value_schema, &r.value) {
            (None, Value::Map(_)) => {
                let key = self
                    .fields
                    .iter()
                    .map(|f| (Value::String(f.clone()), r.value.get(f).cloned().unwrap_or(Value::Null)))
                    .collect();
                r.key_schema = None;
                r.key = Value::Map(key);
            }
            (None, _) => return Err(ConnectError::Data("Only Map objects supported in absence of schema for [copying fields from value to key]".into())),
            (Some(schema), value) => {
                let mut key_fields = Vec::new();
                let mut key = Vec::new();
                for f in &self.fields {
                    let field = schema.field(f).ok_or_else(|| ConnectError::Data(format!("Field does not exist: {f}")))?;
                    key_fields.push(field.clone());
                    key.push((f.clone(), value.get(f).cloned().unwrap_or(Value::Null)));
                }
                r.key_schema = Some(Schema::structure(key_fields));
                r.key = Value::Struct(key);
            }
        }
        Ok(Some(r))
    }
}

struct RegexRouter {
    regex: Regex,
    replacement: String,
}

impl Transformation for RegexRouter {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        if self.regex.is_match(&r.topic) {
            r.topic = self
                .regex
                .replace(&r.topic, self.replacement.as_str())
                .into_owned();
        }
        Ok(Some(r))
    }
}

struct TimestampRouter {
    topic_format: String,
    timestamp_format: String,
}

impl Transformation for TimestampRouter {
    fn apply(&self, mut r: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let ms = r.timestamp_ms.ok_or_else(|| {
            ConnectError::Data(format!("Timestamp missing on record: topic {}", r.topic))
        })?;
        let stamp = simple_date_format(&self.timestamp_format, ms)?;
        r.topic = self
            .topic_format
            .replace("${topic}", &r.topic)
            .replace("${timestamp}", &stamp);
        Ok(Some(r))
    }
}

/// Java's `SimpleDateFormat` in UTC for the letters routers use: y, M, d, H, h, m, s, S,
/// with `'quoted'` literals.
pub fn simple_date_format(pattern: &str, epoch_ms: i64) -> Result<String, ConnectError> {
    let ts = jiff::Timestamp::from_millisecond(epoch_ms)
        .map_err(|e| ConnectError::Data(format!("timestamp {epoch_ms}: {e}")))?;
    let dt = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&q| q == '\'')
                .map(|p| i + 1 + p)
                .unwrap_or(chars.len());
            if end == i + 1 {
                out.push('\'');
            } else {
                out.extend(&chars[i + 1..end]);
            }
            i = end + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        let pad = |v: i64, width: usize| format!("{v:0width$}");
        let text = match c {
            'y' if run == 2 => pad(i64::from(dt.year()) % 100, 2),
            'y' => pad(dt.year().into(), run),
            'M' => pad(dt.month().into(), run),
            'd' => pad(dt.day().into(), run),
            'H' => pad(dt.hour().into(), run),
            'h' => pad(((i64::from(dt.hour()) + 11) % 12) + 1, run),
            'm' => pad(dt.minute().into(), run),
            's' => pad(dt.second().into(), run),
            'S' => pad(i64::from(dt.millisecond()), run),
            other => {
                return Err(config_error(format!(
                "timestamp.format: the letter {other} is not supported; use y, M, d, H, h, m, s, S"
            )))
            }
        };
        out.push_str(&text);
        i += run;
    }
    Ok(out)
}

struct Filter;

impl Transformation for Filter {
    fn apply(&self, _r: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        Ok(None)
    }
}

struct TopicNameMatches {
    pattern: Regex,
}

impl Predicate for TopicNameMatches {
    fn test(&self, r: &ConnectRecord) -> bool {
        self.pattern.is_match(&r.topic)
    }
}

struct HasHeaderKey {
    name: String,
}

impl Predicate for HasHeaderKey {
    fn test(&self, r: &ConnectRecord) -> bool {
        r.headers.iter().any(|h| h.key == self.name)
    }
}

struct RecordIsTombstone;

impl Predicate for RecordIsTombstone {
    fn test(&self, r: &ConnectRecord) -> bool {
        r.value.is_null()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::data::Header;
    use crate::transforms::TransformChain;

    fn chain(pairs: &[(&str, &str)]) -> TransformChain {
        let config: Config = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TransformChain::from_config(&config).expect("valid transforms")
    }

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| (Value::String(k.to_string()), v.clone()))
                .collect(),
        )
    }

    fn schemaless(value: Value) -> ConnectRecord {
        ConnectRecord {
            kafka_partition: Some(3),
            timestamp_ms: Some(1_483_228_800_000),
            ..ConnectRecord::new("orders", None, value)
        }
    }

    fn field(name: &str, schema: Schema) -> Field {
        Field {
            name: name.into(),
            schema,
        }
    }

    fn one(chain: &TransformChain, r: ConnectRecord) -> ConnectRecord {
        chain.apply(r).expect("applies").expect("kept")
    }

    #[test]
    fn insert_field_adds_static_topic_partition_offset_and_timestamp() {
        // Kafka's docs: static.field MessageSource with static.value "Kafka Connect framework".
        let c = chain(&[
            ("transforms", "insert"),
            (
                "transforms.insert.type",
                "org.apache.kafka.connect.transforms.InsertField$Value",
            ),
            ("transforms.insert.static.field", "MessageSource"),
            ("transforms.insert.static.value", "Kafka Connect framework"),
            ("transforms.insert.topic.field", "topic!"),
            ("transforms.insert.partition.field", "part"),
        ]);
        let out = one(&c, schemaless(map(&[("foo", Value::String("bar".into()))])));
        assert_eq!(out.value.get("foo"), Some(&Value::String("bar".into())));
        assert_eq!(
            out.value.get("MessageSource"),
            Some(&Value::String("Kafka Connect framework".into()))
        );
        assert_eq!(
            out.value.get("topic"),
            Some(&Value::String("orders".into()))
        );
        assert_eq!(out.value.get("part"), Some(&Value::Int32(3)));

        // With a schema: the struct and its schema both grow; `!` makes the field required.
        let schema = Schema::structure(vec![field("id", Schema::new(SchemaType::Int64))]);
        let r = ConnectRecord {
            kafka_offset: Some(42),
            ..ConnectRecord::new(
                "orders",
                Some(schema),
                Value::Struct(vec![("id".into(), Value::Int64(1))]),
            )
        };
        let c = chain(&[
            ("transforms", "i"),
            ("transforms.i.type", "InsertField$Value"),
            ("transforms.i.offset.field", "offset!"),
            ("transforms.i.timestamp.field", "ts"),
        ]);
        let out = one(&c, r);
        let s = out.value_schema.as_ref().expect("schema");
        assert_eq!(
            s.field("offset").expect("offset").schema,
            Schema::new(SchemaType::Int64)
        );
        assert_eq!(
            s.field("ts").expect("ts").schema,
            Schema::optional_timestamp()
        );
        assert_eq!(out.value.get("offset"), Some(&Value::Int64(42)));
        assert_eq!(out.value.get("ts"), Some(&Value::Null));

        // Tombstones pass; the offset of a source record cannot be inserted.
        let tomb = schemaless(Value::Null);
        assert_eq!(one(&c, tomb.clone()), tomb);
        assert!(c.apply(schemaless(map(&[]))).is_err());
    }

    #[test]
    fn replace_field_includes_excludes_and_renames() {
        let c = chain(&[
            ("transforms", "r"),
            (
                "transforms.r.type",
                "org.apache.kafka.connect.transforms.ReplaceField$Value",
            ),
            ("transforms.r.exclude", "c"),
            ("transforms.r.renames", "foo:c,bar:d"),
        ]);
        let out = one(
            &c,
            schemaless(map(&[
                ("foo", Value::Int64(1)),
                ("bar", Value::Int64(2)),
                ("c", Value::Int64(3)),
            ])),
        );
        assert_eq!(
            out.value,
            map(&[("c", Value::Int64(1)), ("d", Value::Int64(2))])
        );

        let schema = Schema::structure(vec![
            field("a", Schema::string()),
            field("b", Schema::string()),
            field("z", Schema::string()),
        ]);
        let value = Value::Struct(vec![
            ("a".into(), Value::String("1".into())),
            ("b".into(), Value::String("2".into())),
            ("z".into(), Value::String("3".into())),
        ]);
        let c = chain(&[
            ("transforms", "r"),
            ("transforms.r.type", "ReplaceField$Value"),
            ("transforms.r.include", "a,z"),
            ("transforms.r.renames", "z:zz"),
        ]);
        let out = one(&c, ConnectRecord::new("t", Some(schema), value));
        assert_eq!(
            out.value,
            Value::Struct(vec![
                ("a".into(), Value::String("1".into())),
                ("zz".into(), Value::String("3".into()))
            ])
        );
        let names: Vec<&str> = out
            .value_schema
            .as_ref()
            .expect("schema")
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["a", "zz"]);
    }

    #[test]
    fn mask_field_uses_zero_values_or_the_replacement() {
        let c = chain(&[
            ("transforms", "m"),
            ("transforms.m.type", "MaskField$Value"),
            ("transforms.m.fields", "ip,count,ok,tags"),
        ]);
        let out = one(
            &c,
            schemaless(map(&[
                ("ip", Value::String("10.0.0.1".into())),
                ("count", Value::Int32(9)),
                ("ok", Value::Boolean(true)),
                ("tags", Value::Array(vec![Value::String("x".into())])),
                ("keep", Value::Int32(1)),
            ])),
        );
        assert_eq!(
            out.value,
            map(&[
                ("ip", Value::String(String::new())),
                ("count", Value::Int32(0)),
                ("ok", Value::Boolean(false)),
                ("tags", Value::Array(vec![])),
                ("keep", Value::Int32(1)),
            ])
        );
        let c = chain(&[
            ("transforms", "m"),
            ("transforms.m.type", "MaskField$Value"),
            ("transforms.m.fields", "ssn,n"),
            ("transforms.m.replacement", "123"),
        ]);
        let out = one(
            &c,
            schemaless(map(&[
                ("ssn", Value::String("555-55".into())),
                ("n", Value::Int64(7)),
            ])),
        );
        assert_eq!(
            out.value,
            map(&[
                ("ssn", Value::String("123".into())),
                ("n", Value::Int64(123))
            ])
        );
        let c = chain(&[
            ("transforms", "m"),
            ("transforms.m.type", "MaskField$Value"),
            ("transforms.m.fields", "n"),
            ("transforms.m.replacement", "abc"),
        ]);
        assert!(
            c.apply(schemaless(map(&[("n", Value::Int64(7))]))).is_err(),
            "abc is no number"
        );
    }

    #[test]
    fn value_to_key_and_extract_field_as_kafkas_docs() {
        // Kafka's docs: ValueToKey fields=userId,city,state then ExtractField$Key field=userId.
        let schema = Schema::structure(vec![
            field("userId", Schema::new(SchemaType::Int32)),
            field("city", Schema::string()),
            field("state", Schema::string()),
            field("other", Schema::string()),
        ]);
        let value = Value::Struct(vec![
            ("userId".into(), Value::Int32(7)),
            ("city".into(), Value::String("Austin".into())),
            ("state".into(), Value::String("TX".into())),
            ("other".into(), Value::String("x".into())),
        ]);
        let c = chain(&[
            ("transforms", "v2k"),
            (
                "transforms.v2k.type",
                "org.apache.kafka.connect.transforms.ValueToKey",
            ),
            ("transforms.v2k.fields", "userId,city,state"),
        ]);
        let out = one(
            &c,
            ConnectRecord::new("t", Some(schema.clone()), value.clone()),
        );
        assert_eq!(
            out.key,
            Value::Struct(vec![
                ("userId".into(), Value::Int32(7)),
                ("city".into(), Value::String("Austin".into())),
                ("state".into(), Value::String("TX".into())),
            ])
        );
        assert_eq!(out.key_schema.as_ref().expect("key schema").fields.len(), 3);
        assert_eq!(out.value, value, "the value stays");

        let c = chain(&[
            ("transforms", "v2k,extract"),
            ("transforms.v2k.type", "ValueToKey"),
            ("transforms.v2k.fields", "userId"),
            ("transforms.extract.type", "ExtractField$Key"),
            ("transforms.extract.field", "userId"),
        ]);
        let out = one(
            &c,
            ConnectRecord::new("t", Some(schema.clone()), value.clone()),
        );
        assert_eq!(
            (out.key_schema, out.key),
            (Some(Schema::new(SchemaType::Int32)), Value::Int32(7))
        );

        let c = chain(&[
            ("transforms", "e"),
            ("transforms.e.type", "ExtractField$Value"),
            ("transforms.e.field", "id"),
        ]);
        let out = one(
            &c,
            schemaless(map(&[
                ("id", Value::Int64(42)),
                ("cost", Value::Int64(4000)),
            ])),
        );
        assert_eq!(out.value, Value::Int64(42));
        let c = chain(&[
            ("transforms", "e"),
            ("transforms.e.type", "ExtractField$Value"),
            ("transforms.e.field", "nope"),
        ]);
        assert!(
            c.apply(ConnectRecord::new("t", Some(schema.clone()), value.clone()))
                .is_err(),
            "Unknown field"
        );
        let c = chain(&[
            ("transforms", "v"),
            ("transforms.v.type", "ValueToKey"),
            ("transforms.v.fields", "nope"),
        ]);
        assert!(
            c.apply(ConnectRecord::new("t", Some(schema), value))
                .is_err(),
            "Field does not exist"
        );
    }

    #[test]
    fn routers_rename_topics() {
        let c = chain(&[
            ("transforms", "route"),
            (
                "transforms.route.type",
                "org.apache.kafka.connect.transforms.RegexRouter",
            ),
            ("transforms.route.regex", "(.*)-(.*)"),
            ("transforms.route.replacement", "$2_$1"),
        ]);
        assert_eq!(
            one(&c, ConnectRecord::new("db-users", None, Value::Null)).topic,
            "users_db"
        );
        assert_eq!(
            one(&c, ConnectRecord::new("plain", None, Value::Null)).topic,
            "plain",
            "no whole match, no change"
        );

        let c = chain(&[
            ("transforms", "ts"),
            ("transforms.ts.type", "TimestampRouter"),
        ]);
        // 2017-01-01T00:00:00Z
        assert_eq!(one(&c, schemaless(Value::Null)).topic, "orders-20170101");
        let c = chain(&[
            ("transforms", "ts"),
            ("transforms.ts.type", "TimestampRouter"),
            ("transforms.ts.topic.format", "${timestamp}.${topic}"),
            ("transforms.ts.timestamp.format", "yyyy-MM-dd'T'HH"),
        ]);
        let r = ConnectRecord {
            timestamp_ms: Some(1_700_000_000_000),
            ..ConnectRecord::new("t", None, Value::Null)
        };
        assert_eq!(one(&c, r).topic, "2023-11-14T22.t");
        assert!(
            c.apply(ConnectRecord::new("t", None, Value::Null)).is_err(),
            "Timestamp missing"
        );
    }

    #[test]
    fn filter_with_predicates_and_negate() {
        let base = [
            ("transforms", "drop"),
            (
                "transforms.drop.type",
                "org.apache.kafka.connect.transforms.Filter",
            ),
            ("transforms.drop.predicate", "isFoo"),
            ("predicates", "isFoo"),
            (
                "predicates.isFoo.type",
                "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
            ),
            ("predicates.isFoo.pattern", "foo.*"),
        ];
        let c = chain(&base);
        assert_eq!(
            c.apply(ConnectRecord::new("foobar", None, Value::Null))
                .expect("ok"),
            None
        );
        assert!(
            c.apply(ConnectRecord::new("barfoo", None, Value::Null))
                .expect("ok")
                .is_some(),
            "the whole name must match"
        );
        let mut negated = base.to_vec();
        negated.push(("transforms.drop.negate", "true"));
        let c = chain(&negated);
        assert!(c
            .apply(ConnectRecord::new("foobar", None, Value::Null))
            .expect("ok")
            .is_some());
        assert_eq!(
            c.apply(ConnectRecord::new("barfoo", None, Value::Null))
                .expect("ok"),
            None
        );

        let c = chain(&[
            ("transforms", "drop"),
            ("transforms.drop.type", "Filter"),
            ("transforms.drop.predicate", "tomb"),
            ("predicates", "tomb,hdr"),
            ("predicates.tomb.type", "RecordIsTombstone"),
            ("predicates.hdr.type", "HasHeaderKey"),
            ("predicates.hdr.name", "x"),
        ]);
        assert_eq!(
            c.apply(ConnectRecord::new("t", None, Value::Null))
                .expect("ok"),
            None
        );
        assert!(c
            .apply(ConnectRecord::new("t", None, Value::Int8(1)))
            .expect("ok")
            .is_some());

        let c = chain(&[
            ("transforms", "drop"),
            ("transforms.drop.type", "Filter"),
            ("transforms.drop.predicate", "hdr"),
            ("predicates", "hdr"),
            ("predicates.hdr.type", "HasHeaderKey"),
            ("predicates.hdr.name", "x"),
        ]);
        let mut r = ConnectRecord::new("t", None, Value::Int8(1));
        assert!(c.apply(r.clone()).expect("ok").is_some());
        r.headers.push(Header {
            key: "x".into(),
            value: Some(Bytes::from_static(b"1")),
        });
        assert_eq!(c.apply(r).expect("ok"), None);
    }

    #[test]
    fn bad_transform_configs_are_refused() {
        for bad in [
            vec![("transforms", "a")],
            vec![
                ("transforms", "a"),
                ("transforms.a.type", "NoSuchTransform"),
            ],
            vec![("transforms", "a"), ("transforms.a.type", "InsertField")],
            vec![
                ("transforms", "a"),
                ("transforms.a.type", "InsertField$Value"),
            ],
            vec![
                ("transforms", "a"),
                ("transforms.a.type", "Filter"),
                ("transforms.a.predicate", "p"),
            ],
            vec![
                ("transforms", "a"),
                ("transforms.a.type", "RegexRouter"),
                ("transforms.a.regex", "("),
            ],
        ] {
            let config: Config = bad
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert!(TransformChain::from_config(&config).is_err(), "{bad:?}");
        }
    }
}
