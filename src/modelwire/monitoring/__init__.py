"""Model monitors and alerts: reference profiles, drift statistics, windows, the alert state machine,
rules, silences, payload records, and the monitoring façade (docs/monitoring.md). No transport imports."""
