//! Inputs. Each runs until its shutdown token fires (or its input ends), handing lines to
//! the pipeline through an `EventSender` and waiting when the pipeline is full.

pub mod file;
pub mod forward;
pub mod http;
pub mod otlp;
pub mod stdin;
