//! What the data source answered for each widget: the input of drawing, separate from the
//! calls that produce it (`fetch`), so that drawing stays pure and the offline preview is a
//! function of the files alone.

/// The time range the data covers, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) start: i64,
    pub(crate) end: i64,
}

/// One drawn series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) label: String,
    /// (Unix seconds, value), ascending.
    pub(crate) points: Vec<(i64, f64)>,
    pub(crate) right: bool,
    pub(crate) color: Option<String>,
}

/// An alarm's state as DescribeAlarms gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AlarmState {
    pub(crate) name: String,
    /// `OK`, `ALARM`, `INSUFFICIENT_DATA`; `None`: no such alarm.
    pub(crate) state: Option<String>,
}

/// Recent log lines for a log widget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogLines {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
    /// How the lines were found (an approximation of the query).
    pub(crate) note: String,
}

/// What one widget has to draw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Fetched {
    /// No AWS call was made (`--offline`): layout and titles only.
    Offline,
    /// Series with data (maybe none), and what could not be drawn.
    Metric {
        series: Vec<Series>,
        notes: Vec<String>,
    },
    Alarms(Vec<AlarmState>),
    Logs(LogLines),
    /// The call failed: the widget says so.
    Failed(String),
    /// Nothing to fetch for this kind of widget.
    Nothing,
}

/// The data of one dashboard: one entry per widget, in widget order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DashboardData {
    pub(crate) window: Option<Window>,
    pub(crate) widgets: Vec<Fetched>,
}

impl DashboardData {
    /// Offline: no window, nothing fetched.
    pub(crate) fn offline(widgets: usize) -> Self {
        Self {
            window: None,
            widgets: vec![Fetched::Offline; widgets],
        }
    }
}
