//! Outputs. Each sink drains the pipeline's receiver until every sender is gone, flushing
//! what it holds before returning.

pub mod cloudwatch_logs;
pub mod cloudwatch_metrics;
pub mod retry;
