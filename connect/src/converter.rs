//! Converters between Connect values and the bytes of Kafka records, by Kafka's class names:
//! `StringConverter`, `JsonConverter` (with or without schemas) and `ByteArrayConverter`.

use bytes::Bytes;
use serde_json::{json, Value as Json};

use crate::config::{get_bool, Config};
use crate::data::{Field, Schema, SchemaType, Value};
use crate::error::ConnectError;

pub const STRING_CONVERTER: &str = "org.apache.kafka.connect.storage.StringConverter";
pub const JSON_CONVERTER: &str = "org.apache.kafka.connect.json.JsonConverter";
pub const BYTE_ARRAY_CONVERTER: &str = "org.apache.kafka.connect.converters.ByteArrayConverter";

/// Turns Connect data into record bytes and back (Kafka's `Converter`).
pub trait Converter: Send + Sync + std::fmt::Debug {
    /// Serializes a key or value (Kafka's `fromConnectData`); `None` is a null in Kafka.
    fn serialize(
        &self,
        topic: &str,
        schema: Option<&Schema>,
        value: &Value,
    ) -> Result<Option<Bytes>, ConnectError>;

    /// Deserializes a key or value (Kafka's `toConnectData`); `None` is a null in Kafka.
    fn deserialize(
        &self,
        topic: &str,
        data: Option<&[u8]>,
    ) -> Result<(Option<Schema>, Value), ConnectError>;
}

/// Builds the converter a class name names (Kafka's full name or its simple name), with
/// its own settings (`schemas.enable`, `converter.encoding`): the `key.converter.` or
/// `value.converter.` keys with the prefix removed.
pub fn converter_for(class: &str, settings: &Config) -> Result<Box<dyn Converter>, ConnectError> {
    let simple = class.trim().rsplit('.').next().unwrap_or_default();
    match simple {
        "StringConverter" => {
            if let Some(encoding) = settings.get("converter.encoding") {
                let e = encoding.trim().to_ascii_uppercase().replace('-', "");
                if e != "UTF8" {
                    return Err(ConnectError::Config(format!(
                        "converter.encoding {encoding:?} is not supported: Runnel's StringConverter reads and writes UTF-8"
                    )));
                }
            }
            Ok(Box::new(StringConverter))
        }
        "JsonConverter" => Ok(Box::new(JsonConverter {
            schemas_enable: get_bool(settings, "schemas.enable", true)?,
        })),
        "ByteArrayConverter" => Ok(Box::new(ByteArrayConverter)),
        _ => Err(ConnectError::Config(format!(
            "Invalid value {class} for configuration converter: Class {class} could not be found. Runnel has {STRING_CONVERTER}, {JSON_CONVERTER} and {BYTE_ARRAY_CONVERTER}"
        ))),
    }
}

/// Kafka's `StringConverter`: values become their string form; bytes read back as strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringConverter;

impl Converter for StringConverter {
    fn serialize(
        &self,
        _topic: &str,
        _schema: Option<&Schema>,
        value: &Value,
    ) -> Result<Option<Bytes>, ConnectError> {
        Ok(match value {
            Value::Null => None,
            other => Some(Bytes::from(other.to_java_string())),
        })
    }

    fn deserialize(
        &self,
        _topic: &str,
        data: Option<&[u8]>,
    ) -> Result<(Option<Schema>, Value), ConnectError> {
        let schema = Some(Schema::string().optional());
        match data {
            None => Ok((schema, Value::Null)),
            Some(bytes) => {
                let s = std::str::from_utf8(bytes).map_err(|e| {
                    ConnectError::Data(format!(
                        "Failed to deserialize string: the bytes are not UTF-8 ({e})"
                    ))
                })?;
                Ok((schema, Value::String(s.to_string())))
            }
        }
    }
}

/// Kafka's `ByteArrayConverter`: bytes pass through untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteArrayConverter;

impl Converter for ByteArrayConverter {
    fn serialize(
        &self,
        topic: &str,
        schema: Option<&Schema>,
        value: &Value,
    ) -> Result<Option<Bytes>, ConnectError> {
        if let Some(s) = schema {
            if s.schema_type != SchemaType::Bytes {
                return Err(ConnectError::Data(format!(
                    "Invalid schema type for ByteArrayConverter: {} (topic {topic})",
                    s.schema_type.json_name().to_uppercase()
                )));
            }
        }
        match value {
            Value::Null => Ok(None),
            Value::Bytes(b) => Ok(Some(b.clone())),
            other => Err(ConnectError::Data(format!(
                "ByteArrayConverter is not compatible with objects of type {}",
                type_name(other)
            ))),
        }
    }

    fn deserialize(
        &self,
        _topic: &str,
        data: Option<&[u8]>,
    ) -> Result<(Option<Schema>, Value), ConnectError> {
        let schema = Some(Schema::new(SchemaType::Bytes).optional());
        Ok(match data {
            None => (schema, Value::Null),
            Some(b) => (schema, Value::Bytes(Bytes::copy_from_slice(b))),
        })
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "class java.lang.Boolean",
        Value::Int8(_) => "class java.lang.Byte",
        Value::Int16(_) => "class java.lang.Short",
        Value::Int32(_) => "class java.lang.Integer",
        Value::Int64(_) => "class java.lang.Long",
        Value::Float32(_) => "class java.lang.Float",
        Value::Float64(_) => "class java.lang.Double",
        Value::String(_) => "class java.lang.String",
        Value::Bytes(_) => "class [B",
        Value::Array(_) => "interface java.util.List",
        Value::Map(_) => "interface java.util.Map",
        Value::Struct(_) => "class org.apache.kafka.connect.data.Struct",
    }
}

/// Kafka's `JsonConverter`. With `schemas.enable=true` (the default) every message is an
/// envelope `{"schema": ..., "payload": ...}`; without, the bare JSON.
#[derive(Debug, Clone, Copy)]
pub struct JsonConverter {
    pub schemas_enable: bool,
}

impl Converter for JsonConverter {
    fn serialize(
        &self,
        _topic: &str,
        schema: Option<&Schema>,
        value: &Value,
    ) -> Result<Option<Bytes>, ConnectError> {
        if schema.is_none() && value.is_null() {
            return Ok(None);
        }
        let payload = value_to_json(schema, value)?;
        // Written by hand: serde_json's map sorts keys, Kafka writes them in this order.
        let text = if self.schemas_enable {
            let schema_text = schema.map(schema_to_json).unwrap_or_else(|| "null".into());
            format!("{{\"schema\":{schema_text},\"payload\":{payload}}}")
        } else {
            payload
        };
        Ok(Some(Bytes::from(text)))
    }

    fn deserialize(
        &self,
        _topic: &str,
        data: Option<&[u8]>,
    ) -> Result<(Option<Schema>, Value), ConnectError> {
        let Some(data) = data else {
            return Ok((None, Value::Null));
        };
        let json: Json = serde_json::from_slice(data).map_err(|e| {
            ConnectError::Data(format!(
                "Converting byte[] to Kafka Connect data failed due to serialization error: {e}"
            ))
        })?;
        if !self.schemas_enable {
            return Ok((None, json_to_value(None, &json)?));
        }
        let envelope = match &json {
            Json::Object(o) if o.len() == 2 && o.contains_key("schema") && o.contains_key("payload") => o,
            _ => {
                return Err(ConnectError::Data(
                    "JsonConverter with schemas.enable requires \"schema\" and \"payload\" fields and may not contain additional fields. If you are trying to deserialize plain JSON data, set schemas.enable=false in your converter configuration.".into(),
                ))
            }
        };
        let schema = match &envelope["schema"] {
            Json::Null => None,
            s => Some(schema_from_json(s)?),
        };
        let value = json_to_value(schema.as_ref(), &envelope["payload"])?;
        Ok((schema, value))
    }
}

fn quote(s: &str) -> String {
    Json::String(s.to_string()).to_string()
}

fn object(members: Vec<(String, String)>) -> String {
    let inner: Vec<String> = members
        .into_iter()
        .map(|(k, v)| format!("{}:{v}", quote(&k)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A schema as JsonConverter writes it, keys in Kafka's order.
pub fn schema_to_json(schema: &Schema) -> String {
    let mut o: Vec<(String, String)> = vec![("type".into(), quote(schema.schema_type.json_name()))];
    match schema.schema_type {
        SchemaType::Struct => {
            let fields: Vec<String> = schema
                .fields
                .iter()
                .map(|f| {
                    let inner = schema_to_json(&f.schema);
                    // Kafka puts "field" last in each field's schema.
                    format!(
                        "{},\"field\":{}}}",
                        &inner[..inner.len() - 1],
                        quote(&f.name)
                    )
                })
                .collect();
            o.push(("fields".into(), format!("[{}]", fields.join(","))));
        }
        SchemaType::Array => {
            if let Some(v) = &schema.value_schema {
                o.push(("items".into(), schema_to_json(v)));
            }
        }
        SchemaType::Map => {
            if let Some(k) = &schema.key_schema {
                o.push(("keys".into(), schema_to_json(k)));
            }
            if let Some(v) = &schema.value_schema {
                o.push(("values".into(), schema_to_json(v)));
            }
        }
        _ => {}
    }
    o.push(("optional".into(), schema.optional.to_string()));
    if let Some(name) = &schema.name {
        o.push(("name".into(), quote(name)));
    }
    if let Some(version) = schema.version {
        o.push(("version".into(), version.to_string()));
    }
    if let Some(doc) = &schema.doc {
        o.push(("doc".into(), quote(doc)));
    }
    if !schema.parameters.is_empty() {
        o.push(("parameters".into(), json!(schema.parameters).to_string()));
    }
    object(o)
}

/// Reads a schema in JsonConverter's form.
pub fn schema_from_json(json: &Json) -> Result<Schema, ConnectError> {
    let bad = |what: &str| ConnectError::Data(format!("Invalid JSON schema: {what}"));
    let type_name = json
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("schema must contain 'type' field"))?;
    let schema_type = SchemaType::from_json_name(type_name)
        .ok_or_else(|| bad(&format!("unknown schema type: {type_name}")))?;
    let mut schema = Schema::new(schema_type);
    schema.optional = json
        .get("optional")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    schema.name = json.get("name").and_then(Json::as_str).map(str::to_string);
    schema.version = json
        .get("version")
        .and_then(Json::as_i64)
        .and_then(|v| i32::try_from(v).ok());
    schema.doc = json.get("doc").and_then(Json::as_str).map(str::to_string);
    if let Some(Json::Object(params)) = json.get("parameters") {
        for (k, v) in params {
            if let Some(s) = v.as_str() {
                schema.parameters.insert(k.clone(), s.to_string());
            }
        }
    }
    match schema_type {
        SchemaType::Struct => {
            let fields = json
                .get("fields")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("struct schema's \"fields\" argument is not an array"))?;
            for f in fields {
                let name = f
                    .get("field")
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad("struct schema's field name not specified properly"))?;
                schema.fields.push(Field {
                    name: name.to_string(),
                    schema: schema_from_json(f)?,
                });
            }
        }
        SchemaType::Array => {
            let items = json
                .get("items")
                .ok_or_else(|| bad("array schema did not specify the items type"))?;
            schema.value_schema = Some(Box::new(schema_from_json(items)?));
        }
        SchemaType::Map => {
            let keys = json
                .get("keys")
                .ok_or_else(|| bad("map schema did not specify the key type"))?;
            let values = json
                .get("values")
                .ok_or_else(|| bad("map schema did not specify the value type"))?;
            schema.key_schema = Some(Box::new(schema_from_json(keys)?));
            schema.value_schema = Some(Box::new(schema_from_json(values)?));
        }
        _ => {}
    }
    Ok(schema)
}

/// A Connect value as JSON text (struct fields in schema order, bytes as base64, as
/// Jackson writes binary nodes).
pub fn value_to_json(schema: Option<&Schema>, value: &Value) -> Result<String, ConnectError> {
    if let (Some(s), Value::Null) = (schema, value) {
        if !s.optional {
            return Err(ConnectError::Data(
                "Conversion error: null value for field that is required and has no default value"
                    .into(),
            ));
        }
    }
    Ok(match value {
        Value::Null => "null".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Int8(v) => v.to_string(),
        Value::Int16(v) => v.to_string(),
        Value::Int32(v) => v.to_string(),
        Value::Int64(v) => v.to_string(),
        Value::Float32(v) => json!(v).to_string(),
        Value::Float64(v) => json!(v).to_string(),
        Value::String(s) => quote(s),
        Value::Bytes(b) => quote(&base64_encode(b)),
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.value_schema.as_deref());
            let items: Vec<String> = items
                .iter()
                .map(|i| value_to_json(item_schema, i))
                .collect::<Result<_, _>>()?;
            format!("[{}]", items.join(","))
        }
        Value::Map(entries) => {
            let key_schema = schema.and_then(|s| s.key_schema.as_deref());
            let value_schema = schema.and_then(|s| s.value_schema.as_deref());
            if entries.iter().all(|(k, _)| matches!(k, Value::String(_))) {
                let members = entries
                    .iter()
                    .map(|(k, v)| Ok((k.to_java_string(), value_to_json(value_schema, v)?)))
                    .collect::<Result<_, ConnectError>>()?;
                object(members)
            } else {
                // Non-string keys: Kafka writes an array of [key, value] pairs.
                let pairs: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| {
                        Ok(format!(
                            "[{},{}]",
                            value_to_json(key_schema, k)?,
                            value_to_json(value_schema, v)?
                        ))
                    })
                    .collect::<Result<_, ConnectError>>()?;
                format!("[{}]", pairs.join(","))
            }
        }
        Value::Struct(fields) => {
            let members = fields
                .iter()
                .map(|(name, v)| {
                    let field_schema = schema.and_then(|s| s.field(name)).map(|f| &f.schema);
                    Ok((name.clone(), value_to_json(field_schema, v)?))
                })
                .collect::<Result<_, ConnectError>>()?;
            object(members)
        }
    })
}

/// JSON as a Connect value: by the schema when there is one, else inferred (integers as
/// int64, other numbers as float64, objects as maps with string keys), as Kafka does.
pub fn json_to_value(schema: Option<&Schema>, json: &Json) -> Result<Value, ConnectError> {
    let mismatch = |want: &str| {
        ConnectError::Data(format!(
            "Invalid type for {want}: {}",
            match json {
                Json::Null => "NULL",
                Json::Bool(_) => "BOOLEAN",
                Json::Number(_) => "NUMBER",
                Json::String(_) => "STRING",
                Json::Array(_) => "ARRAY",
                Json::Object(_) => "OBJECT",
            }
        ))
    };
    if json.is_null() {
        return Ok(Value::Null);
    }
    let Some(schema) = schema else {
        return Ok(match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Boolean(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int64(i),
                None => Value::Float64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => Value::String(s.clone()),
            Json::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| json_to_value(None, i))
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| Ok((Value::String(k.clone()), json_to_value(None, v)?)))
                    .collect::<Result<_, ConnectError>>()?,
            ),
        });
    };
    let int = |min: i64, max: i64, want: &str| -> Result<i64, ConnectError> {
        json.as_i64()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| mismatch(want))
    };
    Ok(match schema.schema_type {
        SchemaType::Boolean => Value::Boolean(json.as_bool().ok_or_else(|| mismatch("BOOLEAN"))?),
        SchemaType::Int8 => Value::Int8(int(i8::MIN.into(), i8::MAX.into(), "INT8")? as i8),
        SchemaType::Int16 => Value::Int16(int(i16::MIN.into(), i16::MAX.into(), "INT16")? as i16),
        SchemaType::Int32 => Value::Int32(int(i32::MIN.into(), i32::MAX.into(), "INT32")? as i32),
        SchemaType::Int64 => Value::Int64(int(i64::MIN, i64::MAX, "INT64")?),
        SchemaType::Float32 => {
            Value::Float32(json.as_f64().ok_or_else(|| mismatch("FLOAT32"))? as f32)
        }
        SchemaType::Float64 => Value::Float64(json.as_f64().ok_or_else(|| mismatch("FLOAT64"))?),
        SchemaType::String => {
            Value::String(json.as_str().ok_or_else(|| mismatch("STRING"))?.to_string())
        }
        SchemaType::Bytes => {
            let s = json.as_str().ok_or_else(|| mismatch("BYTES"))?;
            Value::Bytes(Bytes::from(base64_decode(s).ok_or_else(|| {
                ConnectError::Data("Invalid bytes field: not base64".into())
            })?))
        }
        SchemaType::Array => {
            let items = json.as_array().ok_or_else(|| mismatch("ARRAY"))?;
            let item_schema = schema.value_schema.as_deref();
            Value::Array(
                items
                    .iter()
                    .map(|i| json_to_value(item_schema, i))
                    .collect::<Result<_, _>>()?,
            )
        }
        SchemaType::Map => {
            let key_schema = schema.key_schema.as_deref();
            let value_schema = schema.value_schema.as_deref();
            match json {
                Json::Object(o) => Value::Map(
                    o.iter()
                        .map(|(k, v)| {
                            Ok((Value::String(k.clone()), json_to_value(value_schema, v)?))
                        })
                        .collect::<Result<_, ConnectError>>()?,
                ),
                Json::Array(pairs) => Value::Map(
                    pairs
                        .iter()
                        .map(|p| match p.as_array().map(Vec::as_slice) {
                            Some([k, v]) => Ok((
                                json_to_value(key_schema, k)?,
                                json_to_value(value_schema, v)?,
                            )),
                            _ => Err(ConnectError::Data(
                                "Found invalid map entry instead of array tuple".into(),
                            )),
                        })
                        .collect::<Result<_, ConnectError>>()?,
                ),
                _ => return Err(mismatch("MAP")),
            }
        }
        SchemaType::Struct => {
            let o = json.as_object().ok_or_else(|| mismatch("STRUCT"))?;
            Value::Struct(
                schema
                    .fields
                    .iter()
                    .map(|f| {
                        let v = o.get(&f.name).unwrap_or(&Json::Null);
                        Ok((f.name.clone(), json_to_value(Some(&f.schema), v)?))
                    })
                    .collect::<Result<_, ConnectError>>()?,
            )
        }
    })
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=')
        .map(|c| BASE64.iter().position(|&d| d == c).map(|p| p as u8))
        .collect::<Option<_>>()?;
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            n |= u32::from(*d) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(
        c: &dyn Converter,
        schema: Option<&Schema>,
        value: &Value,
    ) -> (Option<Schema>, Value) {
        let bytes = c.serialize("t", schema, value).expect("serializes");
        c.deserialize("t", bytes.as_deref()).expect("deserializes")
    }

    #[test]
    fn json_with_schemas_writes_the_quick_start_envelope() {
        let c = JsonConverter {
            schemas_enable: true,
        };
        let bytes = c
            .serialize("t", Some(&Schema::string()), &Value::String("foo".into()))
            .expect("ok")
            .expect("not null");
        assert_eq!(
            std::str::from_utf8(&bytes).expect("utf8"),
            r#"{"schema":{"type":"string","optional":false},"payload":"foo"}"#
        );
        let (schema, value) = c.deserialize("t", Some(&bytes)).expect("reads back");
        assert_eq!(schema, Some(Schema::string()));
        assert_eq!(value, Value::String("foo".into()));
    }

    #[test]
    fn json_struct_roundtrips_with_and_without_schema() {
        let schema = Schema::structure(vec![
            Field {
                name: "id".into(),
                schema: Schema::new(SchemaType::Int32),
            },
            Field {
                name: "name".into(),
                schema: Schema::string().optional(),
            },
            Field {
                name: "raw".into(),
                schema: Schema::new(SchemaType::Bytes),
            },
        ]);
        let value = Value::Struct(vec![
            ("id".into(), Value::Int32(7)),
            ("name".into(), Value::Null),
            ("raw".into(), Value::Bytes(Bytes::from_static(b"hello!?"))),
        ]);
        let with = JsonConverter {
            schemas_enable: true,
        };
        assert_eq!(
            roundtrip(&with, Some(&schema), &value),
            (Some(schema.clone()), value.clone())
        );
        let without = JsonConverter {
            schemas_enable: false,
        };
        let bytes = without
            .serialize("t", Some(&schema), &value)
            .expect("ok")
            .expect("some");
        assert_eq!(
            std::str::from_utf8(&bytes).expect("utf8"),
            r#"{"id":7,"name":null,"raw":"aGVsbG8hPw=="}"#
        );
        let (s, v) = without.deserialize("t", Some(&bytes)).expect("reads");
        assert_eq!(s, None);
        assert_eq!(v.get("id"), Some(&Value::Int64(7)));
    }

    #[test]
    fn json_with_schemas_refuses_plain_json_with_kafkas_hint() {
        let c = JsonConverter {
            schemas_enable: true,
        };
        let err = c
            .deserialize("t", Some(br#"{"a":1}"#))
            .expect_err("no envelope");
        assert!(
            err.to_string().contains("set schemas.enable=false"),
            "{err}"
        );
        let c = JsonConverter {
            schemas_enable: false,
        };
        assert_eq!(c.deserialize("t", None).expect("null"), (None, Value::Null));
    }

    #[test]
    fn string_and_byte_array_converters() {
        let s = StringConverter;
        assert_eq!(
            roundtrip(&s, None, &Value::String("héllo".into())),
            (
                Some(Schema::string().optional()),
                Value::String("héllo".into())
            )
        );
        assert_eq!(
            s.serialize("t", None, &Value::Int32(5))
                .expect("ok")
                .as_deref(),
            Some(&b"5"[..])
        );
        assert_eq!(s.serialize("t", None, &Value::Null).expect("ok"), None);
        let b = ByteArrayConverter;
        let v = Value::Bytes(Bytes::from_static(&[0, 255, 7]));
        assert_eq!(roundtrip(&b, None, &v).1, v);
        assert!(b.serialize("t", None, &Value::String("x".into())).is_err());
    }

    #[test]
    fn converters_by_kafkas_class_names() {
        let mut settings = Config::new();
        assert!(converter_for(STRING_CONVERTER, &settings).is_ok());
        assert!(converter_for(BYTE_ARRAY_CONVERTER, &settings).is_ok());
        settings.insert("schemas.enable".into(), "false".into());
        let json = converter_for(JSON_CONVERTER, &settings).expect("json");
        let bytes = json.serialize("t", None, &Value::Int64(3)).expect("ok");
        assert_eq!(bytes.as_deref(), Some(&b"3"[..]));
        assert!(converter_for("com.example.AvroConverter", &settings).is_err());
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(raw.as_bytes()), enc);
            assert_eq!(base64_decode(enc).expect("decodes"), raw.as_bytes());
        }
    }
}
