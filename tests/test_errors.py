"""The one error table: every named error declares its kind and HTTP status in engine/errors.py."""

from __future__ import annotations

import pytest

from engine import errors

#: the status of every error kind, chosen on purpose: a new error must be added here deliberately
EXPECTED = {
    "error": 500, "node_failed": 500, "media_file": 500,
    "invalid_workflow": 400, "invalid_request": 400, "invalid_model_ref": 400, "no_embedded_workflow": 400,
    "unauthorized": 401, "forbidden": 403, "privacy_refused": 403,
    "not_found": 404, "model_not_found": 404, "unsafe_path": 404,
    "cancelled": 409, "conflict": 409, "too_large": 413, "unsupported_media_type": 415,
    "invalid_input": 422, "queue_full": 429,
    "backend_failed": 502, "remote_refused": 502, "rate_limited": 429,
    "backend_unavailable": 503, "ollama_unavailable": 503, "not_configured": 503, "out_of_memory": 503,
    "pull_failed": 503,
    "bad_url": 400, "fetch_refused": 403, "fetch_limit": 422, "fetch_failed": 502,
}


def test_errors_every_kind_has_its_deliberate_status():
    table = {kind: cls.status for kind, cls in errors.named_errors().items()}
    assert table == EXPECTED


def test_errors_every_named_error_lives_in_the_errors_module():
    import engine.jobs  # noqa: F401  (modules that re-export errors: nothing new may be declared there)
    import engine.models  # noqa: F401
    import engine.paths  # noqa: F401
    import gateway.parse  # noqa: F401
    import gateway.security  # noqa: F401
    import nodes  # noqa: F401

    assert {cls.__module__ for cls in errors.named_errors().values()} == {"engine.errors"}


@pytest.mark.parametrize("cause, status", [(errors.InvalidInput("x", "bad"), 422),
                                           (errors.PrivacyRefused("strict"), 403),
                                           (errors.ModelNotFound("hf:a/b"), 404),
                                           (RuntimeError("a bug"), 500)])
def test_errors_a_failed_node_answers_its_causes_status(cause, status):
    assert errors.NodeError("n", "t", cause).status == status


def test_errors_status_of_a_stored_kind_and_an_unknown_one():
    assert errors.status_of("ollama_unavailable") == 503
    assert errors.status_of("no_such_kind") == 500 and errors.status_of(None, 400) == 400


def test_errors_redact_paths_keeps_urls_and_relative_paths():
    message = "cannot open /root/.cache/flow/x.bin (see http://host/a/b, or ./rel/path)"
    assert errors.redact_paths(message) == "cannot open …/x.bin (see http://host/a/b, or ./rel/path)"
