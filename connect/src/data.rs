//! Connect's data model: schemas, values and records, as Kafka's `org.apache.kafka.connect.data`.

use std::collections::BTreeMap;

use bytes::Bytes;

/// The type of a schema, by Kafka's names (`Schema.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
    Bytes,
    Array,
    Map,
    Struct,
}

impl SchemaType {
    /// The lower-case name JsonConverter writes (`"int32"`, `"struct"`, ...).
    pub fn json_name(self) -> &'static str {
        match self {
            SchemaType::Int8 => "int8",
            SchemaType::Int16 => "int16",
            SchemaType::Int32 => "int32",
            SchemaType::Int64 => "int64",
            SchemaType::Float32 => "float",
            SchemaType::Float64 => "double",
            SchemaType::Boolean => "boolean",
            SchemaType::String => "string",
            SchemaType::Bytes => "bytes",
            SchemaType::Array => "array",
            SchemaType::Map => "map",
            SchemaType::Struct => "struct",
        }
    }

    pub fn from_json_name(name: &str) -> Option<SchemaType> {
        Some(match name {
            "int8" => SchemaType::Int8,
            "int16" => SchemaType::Int16,
            "int32" => SchemaType::Int32,
            "int64" => SchemaType::Int64,
            "float" => SchemaType::Float32,
            "double" => SchemaType::Float64,
            "boolean" => SchemaType::Boolean,
            "string" => SchemaType::String,
            "bytes" => SchemaType::Bytes,
            "array" => SchemaType::Array,
            "map" => SchemaType::Map,
            "struct" => SchemaType::Struct,
            _ => return None,
        })
    }
}

/// Kafka's logical type name for timestamps (an int64 of epoch milliseconds).
pub const TIMESTAMP_LOGICAL_NAME: &str = "org.apache.kafka.connect.data.Timestamp";

/// A Connect schema. Struct schemas list their fields in order; arrays have a value
/// schema, maps a key and a value schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub schema_type: SchemaType,
    pub optional: bool,
    pub name: Option<String>,
    pub version: Option<i32>,
    pub doc: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub fields: Vec<Field>,
    pub key_schema: Option<Box<Schema>>,
    pub value_schema: Option<Box<Schema>>,
}

/// A named field of a struct schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub schema: Schema,
}

impl Schema {
    pub fn new(schema_type: SchemaType) -> Schema {
        Schema {
            schema_type,
            optional: false,
            name: None,
            version: None,
            doc: None,
            parameters: BTreeMap::new(),
            fields: Vec::new(),
            key_schema: None,
            value_schema: None,
        }
    }

    pub fn optional(mut self) -> Schema {
        self.optional = true;
        self
    }

    /// Kafka's `Schema.STRING_SCHEMA`.
    pub fn string() -> Schema {
        Schema::new(SchemaType::String)
    }

    /// A struct schema with these fields.
    pub fn structure(fields: Vec<Field>) -> Schema {
        Schema {
            fields,
            ..Schema::new(SchemaType::Struct)
        }
    }

    /// Kafka's `Timestamp.SCHEMA`, optional.
    pub fn optional_timestamp() -> Schema {
        Schema {
            name: Some(TIMESTAMP_LOGICAL_NAME.to_string()),
            version: Some(1),
            ..Schema::new(SchemaType::Int64).optional()
        }
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// A Connect value. Structs keep their fields in schema order; schemaless maps (what
/// JsonConverter reads without schemas) are `Map`s with `String` keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    String(String),
    Bytes(Bytes),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Struct(Vec<(String, Value)>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A field of a struct, or the value of a string key of a map.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::String(s) if s == name))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as Java's `toString` prints it, which is what FileStreamSink writes.
    pub fn to_java_string(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Boolean(b) => b.to_string(),
            Value::Int8(v) => v.to_string(),
            Value::Int16(v) => v.to_string(),
            Value::Int32(v) => v.to_string(),
            Value::Int64(v) => v.to_string(),
            Value::Float32(v) => java_float(f64::from(*v)),
            Value::Float64(v) => java_float(*v),
            Value::String(s) => s.clone(),
            Value::Bytes(b) => format!("{:?}", b.as_ref()),
            Value::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(Value::to_java_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Value::Map(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{}={}", k.to_java_string(), v.to_java_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Value::Struct(fields) => format!(
                "Struct{{{}}}",
                fields
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| format!("{k}={}", v.to_java_string()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

fn java_float(v: f64) -> String {
    if v.fract() == 0.0 && v.is_finite() {
        format!("{v:.1}")
    } else {
        v.to_string()
    }
}

/// A record header. Values stay as the bytes on the wire (Kafka's SimpleHeaderConverter
/// would parse them; we pass them through).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// What source and sink records share (Kafka's `ConnectRecord`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRecord {
    pub topic: String,
    pub kafka_partition: Option<i32>,
    pub key_schema: Option<Schema>,
    pub key: Value,
    pub value_schema: Option<Schema>,
    pub value: Value,
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<Header>,
    /// The record's offset in Kafka: set on the records sink tasks receive.
    pub kafka_offset: Option<i64>,
}

impl ConnectRecord {
    /// A record with a schema'd value and no key.
    pub fn new(topic: impl Into<String>, value_schema: Option<Schema>, value: Value) -> Self {
        ConnectRecord {
            topic: topic.into(),
            kafka_partition: None,
            key_schema: None,
            key: Value::Null,
            value_schema,
            value,
            timestamp_ms: None,
            headers: Vec::new(),
            kafka_offset: None,
        }
    }
}

/// A JSON object: source partitions and offsets are maps of this kind, stored as JSON.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// A record a source task read, with where it came from (`source_partition`) and how far
/// the task had read (`source_offset`), which the runtime commits once the record is
/// written.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub source_partition: JsonMap,
    pub source_offset: JsonMap,
    pub record: ConnectRecord,
}

/// A record a sink task receives; `record.kafka_partition` and `record.kafka_offset`
/// say where it is in Kafka.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    pub record: ConnectRecord,
}
