"""Local services on 127.0.0.1: Apache Kafka (KRaft) and PostgreSQL, started by the project.

Public API: :func:`stack_up`, :func:`stack_status`, :func:`stack_down`.
"""

from pipeline.stack.manager import ServiceStatus, stack_down, stack_status, stack_up

__all__ = ["ServiceStatus", "stack_down", "stack_status", "stack_up"]
