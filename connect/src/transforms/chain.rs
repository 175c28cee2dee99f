//! A connector's transforms in order, built from Kafka's `transforms.*` and
//! `predicates.*` keys.

use crate::config::{get_bool, get_list, with_prefix, Config};
use crate::data::ConnectRecord;
use crate::error::ConnectError;

use super::smt;
use super::{Predicate, Transformation};

struct Step {
    transform: Box<dyn Transformation>,
    /// The predicate deciding whether the transform applies, and whether it is negated.
    predicate: Option<(Box<dyn Predicate>, bool)>,
}

/// A connector's transforms, applied in order.
#[derive(Default)]
pub struct TransformChain {
    steps: Vec<Step>,
}

impl std::fmt::Debug for TransformChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransformChain({} steps)", self.steps.len())
    }
}

impl TransformChain {
    /// Builds the chain a connector configuration names.
    pub fn from_config(config: &Config) -> Result<TransformChain, ConnectError> {
        let mut steps = Vec::new();
        for alias in get_list(config, "transforms") {
            let prefix = format!("transforms.{alias}.");
            let settings = with_prefix(config, &prefix);
            let class = settings.get("type").ok_or_else(|| {
                ConnectError::Config(format!(
                    "Invalid value null for configuration {prefix}type: Not a Transformation"
                ))
            })?;
            let transform = smt::transform_for(class, &settings)
                .map_err(|e| ConnectError::Config(format!("transforms.{alias}: {e}")))?;
            let predicate = match settings.get("predicate").map(|p| p.trim()) {
                None | Some("") => None,
                Some(name) => {
                    let pprefix = format!("predicates.{name}.");
                    if !get_list(config, "predicates").iter().any(|p| p == name) {
                        return Err(ConnectError::Config(format!(
                            "Invalid value {name} for configuration {prefix}predicate: the predicate is not listed in predicates"
                        )));
                    }
                    let psettings = with_prefix(config, &pprefix);
                    let pclass = psettings.get("type").ok_or_else(|| {
                        ConnectError::Config(format!(
                            "Invalid value null for configuration {pprefix}type: Not a Predicate"
                        ))
                    })?;
                    let predicate = smt::predicate_for(pclass, &psettings)
                        .map_err(|e| ConnectError::Config(format!("predicates.{name}: {e}")))?;
                    Some((predicate, get_bool(&settings, "negate", false)?))
                }
            };
            steps.push(Step {
                transform,
                predicate,
            });
        }
        Ok(TransformChain { steps })
    }

    /// Runs the record through every transform whose predicate holds; `None`: dropped.
    pub fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        for step in &self.steps {
            if let Some((predicate, negate)) = &step.predicate {
                if predicate.test(&record) == *negate {
                    continue;
                }
            }
            match step.transform.apply(record)? {
                Some(r) => record = r,
                None => return Ok(None),
            }
        }
        Ok(Some(record))
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}
