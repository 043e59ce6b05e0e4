"""The durable job queue (leases, retries, fairness) and the worker that runs fixes."""

from .queue import Job, JobQueue, NewJob
from .sqlite import SqliteJobQueue

__all__ = ["Job", "JobQueue", "NewJob", "SqliteJobQueue"]
