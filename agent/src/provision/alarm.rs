//! One alarm as PutMetricAlarm takes it, in the API's own field names (what the files hold),
//! with the conversions from DescribeAlarms and to PutMetricAlarm, and the normal form both
//! sides are compared in (CloudWatch fills defaults and may reorder lists).

use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat, StandardUnit,
    Statistic,
};
use serde::{Deserialize, Serialize};

/// A metric alarm definition (PutMetricAlarm's input, without tags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AlarmSpec {
    /// The alarm's name (in a file: without the managed prefix).
    pub alarm_name: String,
    /// Shown in notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_description: Option<String>,
    /// Whether actions run (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions_enabled: Option<bool>,
    /// ARNs notified on OK.
    #[serde(default, rename = "OKActions")]
    pub ok_actions: Vec<String>,
    /// ARNs notified on ALARM.
    #[serde(default)]
    pub alarm_actions: Vec<String>,
    /// ARNs notified on INSUFFICIENT_DATA.
    #[serde(default)]
    pub insufficient_data_actions: Vec<String>,
    /// One-metric form: the metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    /// One-metric form: its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// One-metric form: SampleCount, Average, Sum, Minimum or Maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic: Option<String>,
    /// One-metric form: a percentile such as p99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_statistic: Option<String>,
    /// One-metric form: its dimensions.
    #[serde(default)]
    pub dimensions: Vec<DimensionSpec>,
    /// One-metric form: seconds per datapoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<i32>,
    /// One-metric form: the unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Datapoints looked at.
    pub evaluation_periods: i32,
    /// Of those, how many must breach (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapoints_to_alarm: Option<i32>,
    /// The threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// GreaterThanThreshold, ...
    pub comparison_operator: String,
    /// breaching, notBreaching, ignore or missing (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub treat_missing_data: Option<String>,
    /// Percentile alarms: evaluate or ignore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluate_low_sample_count_percentile: Option<String>,
    /// Metric-math form: the queries.
    #[serde(default)]
    pub metrics: Vec<QuerySpec>,
    /// Anomaly detection: the band's query id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_metric_id: Option<String>,
}

/// A dimension.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DimensionSpec {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// A metric-math query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct QuerySpec {
    /// Id, referred to by expressions.
    pub id: String,
    /// A metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_stat: Option<MetricStatSpec>,
    /// Or an expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// Label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Whether this is the alarm's time series (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_data: Option<bool>,
    /// Period of an expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<i32>,
    /// Cross-account: the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// The metric of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct MetricStatSpec {
    /// The metric.
    pub metric: MetricSpec,
    /// Seconds per datapoint.
    pub period: i32,
    /// Statistic or extended statistic.
    pub stat: String,
    /// Unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// A metric's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct MetricSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub metric_name: String,
    /// Dimensions.
    #[serde(default)]
    pub dimensions: Vec<DimensionSpec>,
}

impl AlarmSpec {
    /// The form compared: CloudWatch's defaults written out, lists sorted, empty strings
    /// as absent.
    pub fn normalized(&self) -> Self {
        let mut alarm = self.clone();
        alarm.actions_enabled.get_or_insert(true);
        alarm
            .datapoints_to_alarm
            .get_or_insert(alarm.evaluation_periods);
        alarm
            .treat_missing_data
            .get_or_insert_with(|| "missing".to_owned());
        for option in [
            &mut alarm.alarm_description,
            &mut alarm.evaluate_low_sample_count_percentile,
            &mut alarm.unit,
            &mut alarm.threshold_metric_id,
        ] {
            if option.as_deref() == Some("") {
                *option = None;
            }
        }
        alarm.ok_actions.sort();
        alarm.alarm_actions.sort();
        alarm.insufficient_data_actions.sort();
        alarm.dimensions.sort();
        for query in &mut alarm.metrics {
            query.return_data.get_or_insert(true);
            if let Some(stat) = &mut query.metric_stat {
                stat.metric.dimensions.sort();
            }
        }
        alarm
    }

    /// The fields whose normal forms differ, in file order.
    pub fn changed_fields(&self, other: &Self) -> Vec<String> {
        let ours = serde_json::to_value(self.normalized()).unwrap_or_default();
        let theirs = serde_json::to_value(other.normalized()).unwrap_or_default();
        let (Some(ours), Some(theirs)) = (ours.as_object(), theirs.as_object()) else {
            return vec!["(all)".to_owned()];
        };
        let mut keys: Vec<&String> = ours.keys().collect();
        keys.extend(theirs.keys().filter(|k| !ours.contains_key(*k)));
        keys.into_iter()
            .filter(|k| ours.get(*k) != theirs.get(*k))
            .cloned()
            .collect()
    }

    /// What DescribeAlarms returned, in the same shape.
    pub fn from_sdk(alarm: &MetricAlarm) -> Self {
        Self {
            alarm_name: alarm.alarm_name().unwrap_or_default().to_owned(),
            alarm_description: alarm.alarm_description().map(str::to_owned),
            actions_enabled: alarm.actions_enabled(),
            ok_actions: alarm.ok_actions().to_vec(),
            alarm_actions: alarm.alarm_actions().to_vec(),
            insufficient_data_actions: alarm.insufficient_data_actions().to_vec(),
            metric_name: alarm.metric_name().map(str::to_owned),
            namespace: alarm.namespace().map(str::to_owned),
            statistic: alarm.statistic().map(|s| s.as_str().to_owned()),
            extended_statistic: alarm.extended_statistic().map(str::to_owned),
            dimensions: alarm.dimensions().iter().map(dimension_from_sdk).collect(),
            period: alarm.period(),
            unit: alarm.unit().map(|u| u.as_str().to_owned()),
            evaluation_periods: alarm.evaluation_periods().unwrap_or_default(),
            datapoints_to_alarm: alarm.datapoints_to_alarm(),
            threshold: alarm.threshold(),
            comparison_operator: alarm
                .comparison_operator()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            treat_missing_data: alarm.treat_missing_data().map(str::to_owned),
            evaluate_low_sample_count_percentile: alarm
                .evaluate_low_sample_count_percentile()
                .map(str::to_owned),
            metrics: alarm
                .metrics()
                .iter()
                .map(|q| QuerySpec {
                    id: q.id().unwrap_or_default().to_owned(),
                    metric_stat: q.metric_stat().map(|s| MetricStatSpec {
                        metric: MetricSpec {
                            namespace: s
                                .metric()
                                .and_then(|m| m.namespace())
                                .unwrap_or_default()
                                .to_owned(),
                            metric_name: s
                                .metric()
                                .and_then(|m| m.metric_name())
                                .unwrap_or_default()
                                .to_owned(),
                            dimensions: s
                                .metric()
                                .map(|m| m.dimensions().iter().map(dimension_from_sdk).collect())
                                .unwrap_or_default(),
                        },
                        period: s.period().unwrap_or_default(),
                        stat: s.stat().unwrap_or_default().to_owned(),
                        unit: s.unit().map(|u| u.as_str().to_owned()),
                    }),
                    expression: q.expression().map(str::to_owned),
                    label: q.label().map(str::to_owned),
                    return_data: q.return_data(),
                    period: q.period(),
                    account_id: q.account_id().map(str::to_owned),
                })
                .collect(),
            threshold_metric_id: alarm.threshold_metric_id().map(str::to_owned),
        }
    }

    /// Fills a PutMetricAlarm request (which replaces the whole alarm).
    pub fn to_request(
        &self,
        request: aws_sdk_cloudwatch::operation::put_metric_alarm::builders::PutMetricAlarmFluentBuilder,
    ) -> aws_sdk_cloudwatch::operation::put_metric_alarm::builders::PutMetricAlarmFluentBuilder
    {
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        request
            .alarm_name(&self.alarm_name)
            .set_alarm_description(self.alarm_description.clone())
            .set_actions_enabled(self.actions_enabled)
            .set_ok_actions(list(&self.ok_actions))
            .set_alarm_actions(list(&self.alarm_actions))
            .set_insufficient_data_actions(list(&self.insufficient_data_actions))
            .set_metric_name(self.metric_name.clone())
            .set_namespace(self.namespace.clone())
            .set_statistic(self.statistic.as_deref().map(Statistic::from))
            .set_extended_statistic(self.extended_statistic.clone())
            .set_dimensions(
                (!self.dimensions.is_empty())
                    .then(|| self.dimensions.iter().map(dimension_to_sdk).collect()),
            )
            .set_period(self.period)
            .set_unit(self.unit.as_deref().map(StandardUnit::from))
            .evaluation_periods(self.evaluation_periods)
            .set_datapoints_to_alarm(self.datapoints_to_alarm)
            .set_threshold(self.threshold)
            .comparison_operator(ComparisonOperator::from(self.comparison_operator.as_str()))
            .set_treat_missing_data(self.treat_missing_data.clone())
            .set_evaluate_low_sample_count_percentile(
                self.evaluate_low_sample_count_percentile.clone(),
            )
            .set_metrics(
                (!self.metrics.is_empty()).then(|| self.metrics.iter().map(query_to_sdk).collect()),
            )
            .set_threshold_metric_id(self.threshold_metric_id.clone())
    }
}

fn dimension_from_sdk(d: &Dimension) -> DimensionSpec {
    DimensionSpec {
        name: d.name().unwrap_or_default().to_owned(),
        value: d.value().unwrap_or_default().to_owned(),
    }
}

fn dimension_to_sdk(d: &DimensionSpec) -> Dimension {
    Dimension::builder().name(&d.name).value(&d.value).build()
}

fn query_to_sdk(q: &QuerySpec) -> MetricDataQuery {
    MetricDataQuery::builder()
        .id(&q.id)
        .set_metric_stat(q.metric_stat.as_ref().map(|s| {
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(&s.metric.namespace)
                        .metric_name(&s.metric.metric_name)
                        .set_dimensions(Some(
                            s.metric.dimensions.iter().map(dimension_to_sdk).collect(),
                        ))
                        .build(),
                )
                .period(s.period)
                .stat(&s.stat)
                .set_unit(s.unit.as_deref().map(StandardUnit::from))
                .build()
        }))
        .set_expression(q.expression.clone())
        .set_label(q.label.clone())
        .set_return_data(q.return_data)
        .set_period(q.period)
        .set_account_id(q.account_id.clone())
        .build()
}
