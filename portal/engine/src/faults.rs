//! Test-only fault injection: make step K of a named deployment fail with a
//! retryable error N times, or with a fatal one.
//!
//! Compiled only with the `fault-injection` feature, which the engine's own
//! tests turn on; the `cloudpulse` binary never enables it and has no way to
//! arm a fault.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::StepError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Throttling, as AWS answers under load.
    Retryable,
    /// Access denied: a person must act.
    Fatal,
}

/// (deployment name, step key) -> (fault, failures left).
type Armed = HashMap<(String, String), (Fault, u32)>;

/// Armed faults, keyed by deployment name and step key.
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<Mutex<Armed>>);

impl Faults {
    /// Step `step` of deployment `name` fails `times` times.
    pub fn arm(&self, name: &str, step: &str, fault: Fault, times: u32) {
        if let Ok(mut faults) = self.0.lock() {
            faults.insert((name.to_string(), step.to_string()), (fault, times));
        }
    }

    /// The error to return instead of running the step, if one is armed.
    pub(crate) fn take(&self, name: &str, step: &str) -> Option<StepError> {
        let mut faults = self.0.lock().ok()?;
        let key = (name.to_string(), step.to_string());
        let (fault, left) = faults.get_mut(&key)?;
        if *left == 0 {
            return None;
        }
        *left -= 1;
        Some(match fault {
            Fault::Retryable => {
                StepError::retryable("Throttling", "Rate exceeded (injected fault)")
            }
            Fault::Fatal => StepError::fatal(
                "UnauthorizedOperation",
                "You are not authorized to perform this operation. (injected fault)",
            ),
        })
    }
}
