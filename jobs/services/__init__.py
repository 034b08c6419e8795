"""Job writes, one module per responsibility:

- ``params``: request resolution (engine choice, options it can honour);
- ``submit``: creating jobs (quotas, stored inputs);
- ``dedup``: identical requests (keys, sources, followers);
- ``dispatch``: fair share, sending and re-sending messages;
- ``announce``: a job's events and webhooks;
- ``progress``: a run's ownership of its job, progress reports;
- ``pipelines``: speech and talking-head making;
- ``run``: claim, attempt, store, heartbeat, one failure policy;
- ``staff``: cancel, rerun, requeue;
- ``repair``: the repair sweep's steps.

Dependencies point down that list (``run`` uses ``pipelines``, ``repair``
uses ``run``'s failure policy); nothing here imports the actors
(``jobs.routing`` sends by actor name). The public names are re-exported here.
"""

from jobs.services.announce import job_announce
from jobs.services.dedup import followers_finish
from jobs.services.dispatch import job_resend, job_send, jobs_dispatch
from jobs.services.params import (
    TALKING_HEAD_DEFAULTS,
    TALKING_HEAD_ENGINE_OPTIONS,
    TalkingHeadParams,
    TtsParams,
    WebhookTarget,
    talking_head_params_resolve,
    tts_params_resolve,
)
from jobs.services.pipelines import JobOutput
from jobs.services.progress import job_progress
from jobs.services.repair import jobs_resend_abandoned, jobs_resend_unsent, jobs_stop_overdue
from jobs.services.run import JobBusy, JobRetry, job_attempt, job_claim, job_failure_settle, job_run
from jobs.services.staff import job_cancel, job_requeue, job_rerun
from jobs.services.submit import job_submit_talking_head, job_submit_tts

__all__ = [
    "TALKING_HEAD_DEFAULTS",
    "TALKING_HEAD_ENGINE_OPTIONS",
    "JobBusy",
    "JobOutput",
    "JobRetry",
    "TalkingHeadParams",
    "TtsParams",
    "WebhookTarget",
    "followers_finish",
    "job_announce",
    "job_attempt",
    "job_cancel",
    "job_claim",
    "job_failure_settle",
    "job_progress",
    "job_requeue",
    "job_rerun",
    "job_resend",
    "job_run",
    "job_send",
    "job_submit_talking_head",
    "job_submit_tts",
    "jobs_dispatch",
    "jobs_resend_abandoned",
    "jobs_resend_unsent",
    "jobs_stop_overdue",
    "talking_head_params_resolve",
    "tts_params_resolve",
]
