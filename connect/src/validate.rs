//! Connector configuration validation, as Kafka's `AbstractHerder.validateConnectorConfig`:
//! the common connector keys, the sink's `topics`, the transforms and the plugin's own
//! keys, answered as Kafka's `ConfigInfos`.

use crate::api::{ConnectorType, PluginDesc, Plugins};
use crate::config::{get_list, Config, ConfigDef, ConfigKey, ConfigType, ConfigValue, Importance};
use crate::converter::converter_for;
use crate::entities::{ConfigInfo, ConfigInfos, ConfigKeyInfo, ConfigValueInfo};
use crate::error::ConnectError;
use crate::transforms::TransformChain;

fn java_map(config: &Config) -> String {
    let items: Vec<String> = config.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", items.join(", "))
}

/// The plugin a `connector.class` names.
pub fn find_plugin<'a>(
    plugins: &'a Plugins,
    config: &Config,
) -> Result<&'a PluginDesc, ConnectError> {
    let class = config.get("connector.class").ok_or_else(|| {
        ConnectError::BadRequest(format!(
            "Connector config {} contains no connector type",
            java_map(config)
        ))
    })?;
    plugins.find(class).ok_or_else(|| {
        let known: Vec<String> = plugins.all().iter().map(|p| p.class.clone()).collect();
        ConnectError::Plugin(format!(
            "Failed to find any class that implements Connector and which name matches {class}, available connectors are: {}",
            known.join(", ")
        ))
    })
}

fn common_def(kind: ConnectorType) -> ConfigDef {
    let mut def = ConfigDef::new()
        .define("name", ConfigType::String, None, Importance::High, "Globally unique name to use for this connector.")
        .non_empty()
        .in_group("Common")
        .define("connector.class", ConfigType::String, None, Importance::High, "Name or alias of the class for this connector.")
        .in_group("Common")
        .define("tasks.max", ConfigType::Int, Some("1"), Importance::High, "Maximum number of tasks to use for this connector.")
        .in_group("Common")
        .define("key.converter", ConfigType::Class, Some(""), Importance::Low, "Converter class used to convert between Kafka Connect format and the serialized form that is written to Kafka.")
        .in_group("Common")
        .define("value.converter", ConfigType::Class, Some(""), Importance::Low, "Converter class used to convert between Kafka Connect format and the serialized form that is written to Kafka.")
        .in_group("Common")
        .define("transforms", ConfigType::List, Some(""), Importance::Low, "Aliases for the transformations to be applied to records.")
        .in_group("Transforms")
        .define("predicates", ConfigType::List, Some(""), Importance::Low, "Aliases for the predicates used by transformations.")
        .in_group("Predicates")
        .define("errors.tolerance", ConfigType::String, Some("none"), Importance::Medium, "Behavior for tolerating errors during connector operation: 'none' fails the task at the first error, 'all' skips problematic records.")
        .in_group("Error Handling")
        .define("errors.log.enable", ConfigType::Boolean, Some("false"), Importance::Medium, "If true, log each error and the details of the failed operation.")
        .in_group("Error Handling");
    if kind == ConnectorType::Sink {
        def = def
            .define(
                "topics",
                ConfigType::List,
                Some(""),
                Importance::High,
                "List of topics to consume, separated by commas",
            )
            .in_group("Common")
            .define(
                "topics.regex",
                ConfigType::String,
                Some(""),
                Importance::High,
                "Regular expression giving topics to consume.",
            )
            .in_group("Common")
            .define("errors.deadletterqueue.topic.name", ConfigType::String, Some(""), Importance::Medium, "The name of the topic to be used as the dead letter queue (DLQ) for messages that result in an error when processed by this sink connector.")
            .in_group("Error Handling");
    }
    def
}

/// Validates `config` against the plugin `plugin_name` names, as Kafka's validate endpoint.
pub fn validate(
    plugins: &Plugins,
    plugin_name: &str,
    config: &Config,
) -> Result<ConfigInfos, ConnectError> {
    let mut with_class = config.clone();
    with_class
        .entry("connector.class".into())
        .or_insert_with(|| plugin_name.to_string());
    let plugin = find_plugin(plugins, &with_class)?;
    Ok(validate_with(plugin, &with_class))
}

fn validate_with(plugin: &PluginDesc, config: &Config) -> ConfigInfos {
    let common = common_def(plugin.connector_type);
    let own = (plugin.factory)().as_connector().config_def();
    let mut values: Vec<(ConfigKey, ConfigValue)> = Vec::new();
    for def in [&common, &own] {
        for (key, value) in def.keys.iter().zip(def.validate(config)) {
            values.push((key.clone(), value));
        }
    }
    let mut extra = |name: &str, error: String| {
        if let Some((_, v)) = values.iter_mut().find(|(k, _)| k.name == name) {
            v.errors.push(error);
        }
    };
    if let Some(max) = config.get("tasks.max") {
        if max.trim().parse::<i32>().is_ok_and(|m| m < 1) {
            extra(
                "tasks.max",
                format!(
                    "Invalid value {max} for configuration tasks.max: Value must be at least 1"
                ),
            );
        }
    }
    for which in ["key.converter", "value.converter"] {
        if let Some(class) = config.get(which) {
            if let Err(e) = converter_for(class, &Config::new()) {
                extra(which, e.to_string());
            }
        }
    }
    if let Some(t) = config.get("errors.tolerance") {
        if !matches!(t.trim().to_ascii_lowercase().as_str(), "none" | "all") {
            extra("errors.tolerance", format!("Invalid value {t} for configuration errors.tolerance: String must be one of: none, all"));
        }
    }
    if let Err(e) = TransformChain::from_config(config) {
        extra("transforms", e.to_string());
    }
    if plugin.connector_type == ConnectorType::Sink {
        let topics = get_list(config, "topics");
        let regex = config
            .get("topics.regex")
            .is_some_and(|r| !r.trim().is_empty());
        match (topics.is_empty(), regex) {
            (true, false) => extra("topics", "Must configure one of topics or topics.regex".into()),
            (false, true) => extra("topics", "topics and topics.regex are mutually exclusive options, but both are set.".into()),
            (true, true) => extra("topics.regex", "Runnel's sink tasks subscribe to topics by name; topics.regex is not supported yet".into()),
            (false, false) => {}
        }
    }
    let mut groups: Vec<String> = Vec::new();
    for (k, _) in &values {
        if let Some(g) = &k.group {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
    }
    let error_count = values.iter().map(|(_, v)| v.errors.len()).sum();
    let orders = orders_in_group(values.iter().map(|(k, _)| k));
    let configs = values
        .into_iter()
        .zip(orders)
        .map(|((key, value), order)| ConfigInfo {
            definition: key_info(&key, order),
            value: ConfigValueInfo {
                name: value.name,
                value: value.value,
                recommended_values: Vec::new(),
                errors: value.errors,
                visible: true,
            },
        })
        .collect();
    ConfigInfos {
        name: plugin.class.clone(),
        error_count,
        groups,
        configs,
    }
}

/// Each key's place in its group, from 1 (Kafka's `orderInGroup`; -1 without a group).
fn orders_in_group<'a>(keys: impl Iterator<Item = &'a ConfigKey>) -> Vec<i32> {
    let mut seen: std::collections::BTreeMap<String, i32> = Default::default();
    keys.map(|k| match &k.group {
        Some(g) => {
            let n = seen.entry(g.clone()).or_insert(0);
            *n += 1;
            *n
        }
        None => -1,
    })
    .collect()
}

/// A key as `GET /connector-plugins/{type}/config` shows it.
pub fn key_info(key: &ConfigKey, order: i32) -> ConfigKeyInfo {
    ConfigKeyInfo {
        name: key.name.clone(),
        config_type: key.config_type.name().to_string(),
        required: key.default_value.is_none(),
        // An empty default is Kafka's null, except for lists, whose empty default is "".
        default_value: key
            .default_value
            .clone()
            .filter(|d| !d.is_empty() || key.config_type == ConfigType::List),
        importance: key.importance.name().to_string(),
        documentation: key.documentation.clone(),
        group: key.group.clone(),
        order,
        width: "NONE".to_string(),
        display_name: key.name.clone(),
        dependents: Vec::new(),
    }
}

/// Checks a connector's config before it is created or replaced: the plugin, then every
/// key, with Kafka's message listing the errors.
pub fn validate_connector_config(
    plugins: &Plugins,
    name: &str,
    config: &Config,
) -> Result<PluginDesc, ConnectError> {
    if name.trim().is_empty() {
        return Err(ConnectError::BadRequest(
            "Connector name is required".into(),
        ));
    }
    let plugin = find_plugin(plugins, config)?.clone();
    let infos = validate_with(&plugin, config);
    if infos.error_count > 0 {
        let mut message = format!(
            "Connector configuration is invalid and contains the following {} error(s):",
            infos.error_count
        );
        for c in &infos.configs {
            for e in &c.value.errors {
                message.push('\n');
                message.push_str(e);
            }
        }
        message.push_str("\nYou can also find the above list of errors at the endpoint `/connector-plugins/{connectorType}/config/validate`");
        return Err(ConnectError::BadRequest(message));
    }
    Ok(plugin)
}

/// The keys a plugin accepts (`GET /connector-plugins/{type}/config`): its own, then
/// the common connector keys, as Kafka lists them.
pub fn plugin_config(
    plugins: &Plugins,
    plugin_name: &str,
) -> Result<Vec<ConfigKeyInfo>, ConnectError> {
    let plugin = plugins
        .find(plugin_name)
        .ok_or_else(|| ConnectError::NotFound(format!("Unknown plugin {plugin_name}.")))?;
    let own = (plugin.factory)().as_connector().config_def();
    let common = common_def(plugin.connector_type);
    let keys: Vec<&ConfigKey> = own.keys.iter().chain(common.keys.iter()).collect();
    let orders = orders_in_group(keys.iter().copied());
    Ok(keys
        .iter()
        .zip(orders)
        .map(|(k, o)| key_info(k, o))
        .collect())
}
