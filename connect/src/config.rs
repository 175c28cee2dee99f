//! Configuration definitions (Kafka's `ConfigDef`): what a connector accepts, checked by
//! `validate` and shown by the REST API's plugin endpoints.

use std::collections::BTreeMap;

use crate::error::ConnectError;

/// A connector's or a task's configuration: Kafka's `Map<String, String>`.
pub type Config = BTreeMap<String, String>;

/// The type of a configuration key, by Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl ConfigType {
    pub fn name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Short => "SHORT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
            ConfigType::Class => "CLASS",
            ConfigType::Password => "PASSWORD",
        }
    }
}

/// Kafka's `ConfigDef.Importance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Importance {
    High,
    Medium,
    Low,
}

impl Importance {
    pub fn name(self) -> &'static str {
        match self {
            Importance::High => "HIGH",
            Importance::Medium => "MEDIUM",
            Importance::Low => "LOW",
        }
    }
}

/// One key of a [`ConfigDef`].
#[derive(Debug, Clone)]
pub struct ConfigKey {
    pub name: String,
    pub config_type: ConfigType,
    /// `None`: required (Kafka's `NO_DEFAULT_VALUE`); `Some("")` for a null default.
    pub default_value: Option<String>,
    pub importance: Importance,
    pub documentation: String,
    pub group: Option<String>,
    /// The value may not be empty (Kafka's `NonEmptyString` validator).
    pub non_empty: bool,
}

/// The keys a plugin accepts.
#[derive(Debug, Clone, Default)]
pub struct ConfigDef {
    pub keys: Vec<ConfigKey>,
}

/// What [`ConfigDef::validate`] found for one key.
#[derive(Debug, Clone)]
pub struct ConfigValue {
    pub name: String,
    pub value: Option<String>,
    pub errors: Vec<String>,
}

impl ConfigDef {
    pub fn new() -> Self {
        ConfigDef::default()
    }

    /// Adds a key; `default_value: None` makes it required.
    pub fn define(
        mut self,
        name: &str,
        config_type: ConfigType,
        default_value: Option<&str>,
        importance: Importance,
        documentation: &str,
    ) -> Self {
        self.keys.push(ConfigKey {
            name: name.to_string(),
            config_type,
            default_value: default_value.map(str::to_string),
            importance,
            documentation: documentation.to_string(),
            group: None,
            non_empty: false,
        });
        self
    }

    /// Marks the last defined key as not allowed to be empty.
    pub fn non_empty(mut self) -> Self {
        if let Some(key) = self.keys.last_mut() {
            key.non_empty = true;
        }
        self
    }

    /// Puts the last defined key in a group (as the validate endpoint lists them).
    pub fn in_group(mut self, group: &str) -> Self {
        if let Some(key) = self.keys.last_mut() {
            key.group = Some(group.to_string());
        }
        self
    }

    /// Checks every key against `config`, with Kafka's messages.
    pub fn validate(&self, config: &Config) -> Vec<ConfigValue> {
        self.keys
            .iter()
            .map(|key| {
                let value = config.get(&key.name).cloned();
                let mut errors = Vec::new();
                match (&value, &key.default_value) {
                    (None, None) => errors.push(format!(
                        "Missing required configuration \"{}\" which has no default value.",
                        key.name
                    )),
                    (Some(v), _) => {
                        if let Err(e) = parse_typed(key.config_type, v) {
                            errors.push(format!(
                                "Invalid value {v} for configuration {}: {e}",
                                key.name
                            ));
                        } else if key.non_empty && v.trim().is_empty() {
                            errors.push(format!(
                                "Invalid value {v} for configuration {}: String must be non-empty",
                                key.name
                            ));
                        }
                    }
                    (None, Some(_)) => {}
                }
                ConfigValue {
                    name: key.name.clone(),
                    value: value.or_else(|| key.default_value.clone()),
                    errors,
                }
            })
            .collect()
    }
}

fn parse_typed(config_type: ConfigType, value: &str) -> Result<(), String> {
    let v = value.trim();
    let ok = match config_type {
        ConfigType::Int => v.parse::<i32>().is_ok(),
        ConfigType::Short => v.parse::<i16>().is_ok(),
        ConfigType::Long => v.parse::<i64>().is_ok(),
        ConfigType::Double => v.parse::<f64>().is_ok(),
        ConfigType::Boolean => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        let what = match config_type {
            ConfigType::Boolean => "Expected value to be either true or false",
            ConfigType::Double => "Not a number of type DOUBLE",
            ConfigType::Long => "Not a number of type LONG",
            ConfigType::Short => "Not a number of type SHORT",
            _ => "Not a number of type INT",
        };
        Err(what.to_string())
    }
}

/// Reads an integer setting with its default, with Kafka's message when it is not one.
pub fn get_int(config: &Config, key: &str, default: i64) -> Result<i64, ConnectError> {
    match config.get(key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            ConnectError::Config(format!(
                "Invalid value {v} for configuration {key}: Not a number of type INT"
            ))
        }),
    }
}

/// Reads a boolean setting with its default.
pub fn get_bool(config: &Config, key: &str, default: bool) -> Result<bool, ConnectError> {
    match config.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(ConnectError::Config(format!(
            "Invalid value {v} for configuration {key}: Expected value to be either true or false"
        ))),
    }
}

/// A comma-separated list (Kafka's `LIST` type): items trimmed, empty ones dropped.
pub fn get_list(config: &Config, key: &str) -> Vec<String> {
    config
        .get(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The keys under `prefix`, with the prefix removed (Kafka's `originalsWithPrefix`).
pub fn with_prefix(config: &Config, prefix: &str) -> Config {
    config
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
        .collect()
}
