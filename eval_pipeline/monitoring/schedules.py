"""The daily schedule that monitors the previous day's production traffic."""

import dagster as dg

from eval_pipeline.monitoring.jobs import daily_monitoring_job

# Each run covers the day that ended an hour earlier, so late log files of that day have landed.
daily_monitoring_schedule = dg.build_schedule_from_partitioned_job(
    daily_monitoring_job,
    hour_of_day=1,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Monitor the previous UTC day's requests at 01:00 UTC. Stopped by default; "
    "turn it on in the UI once request logs land in EVAL_PIPELINE_TRAFFIC_DIR every day.",
)
