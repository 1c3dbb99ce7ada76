"""Names of the error types that cross the activity/workflow boundary.

Activities raise ``ApplicationError(message, type=<name>, non_retryable=...)``; workflows
and the CLI match on these names. Keeping them here lets both sides agree without
importing each other.
"""

from __future__ import annotations

PIPELINE_SPEC_ERROR = "PipelineSpecError"
"""The pipeline file or inline spec is invalid (never retried)."""

PIPELINE_NOT_FOUND = "PipelineNotFoundError"
"""A ``pipeline_ref`` names no readable file (never retried)."""

TASK_CONFIG_ERROR = "TaskConfigError"
"""A task's params are wrong for its handler (never retried)."""

TEMPLATE_ERROR = "TemplateError"
"""A template in a task's params failed to render (never retried)."""

DATA_VALIDATION_ERROR = "DataValidationError"
"""A ``validate`` task's rule failed (never retried)."""

EXPRESSION_ERROR = "ExpressionError"
"""A ``transform`` expression is invalid or failed on a record (never retried)."""

HTTP_STATUS_ERROR = "HttpStatusError"
"""An HTTP task got an error status; 4xx other than 408/425/429 are not retried."""

HTTP_TRANSPORT_ERROR = "HttpTransportError"
"""Connection refused, DNS failure, timeout: retried."""

HTTP_DECODE_ERROR = "HttpDecodeError"
"""The body is not the JSON the task expected (never retried)."""

SQL_QUERY_ERROR = "SqlQueryError"
"""The SQL is wrong for the database: syntax, missing table (never retried)."""

SQL_CONNECTION_ERROR = "SqlConnectionError"
"""The database is unreachable: retried."""

TASK_CANCELLED = "TaskCancelled"

NON_RETRYABLE_TASK_ERRORS = (
    PIPELINE_SPEC_ERROR,
    PIPELINE_NOT_FOUND,
    TASK_CONFIG_ERROR,
    TEMPLATE_ERROR,
    DATA_VALIDATION_ERROR,
    EXPRESSION_ERROR,
    HTTP_DECODE_ERROR,
    SQL_QUERY_ERROR,
)
"""Listed as non-retryable on every task's retry policy."""
