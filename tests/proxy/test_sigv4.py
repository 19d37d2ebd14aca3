"""SigV4 against AWS's published test suite, and against botocore's signer when installed.

Vectors from ``aws-sig-v4-test-suite`` (2015-08-30): credentials AKIDEXAMPLE /
wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, region us-east-1, service "service", host
example.amazonaws.com, time 20150830T123600Z. Paths are given as in the suite's ``.req`` files
(raw, not percent-encoded), which the canonical form encodes once.
"""

from __future__ import annotations

from typing import Any

import pytest

from alter_mcp.providers.schema import Injection, InjectionKind
from alter_mcp.proxy.guard import prepare
from alter_mcp.proxy.inject import inject
from alter_mcp.proxy.sigv4 import canonical_request, sign_v4, signing_key
from tests.proxy.conftest import (
    SUITE,
    SUITE_TIME,
    botocore_authorization,
    credential,
    make_provider,
)

SESSION_TOKEN = (
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfp"
    "SPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQ"
    "DYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+s"
    "cqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
)
FORM = (("Content-Type", "application/x-www-form-urlencoded"),)

# name: (method, path, query, headers, body, session token, signed headers, signature)
VECTORS: dict[str, tuple[Any, ...]] = {
    "get-vanilla": ("GET", "/", (), (), b"", None, "host;x-amz-date",
                    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    "get-vanilla-query-order-key-case": (
        "GET", "/", (("Param2", "value2"), ("Param1", "value1")), (), b"", None,
        "host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    "get-vanilla-empty-query-key": (
        "GET", "/", (("Param1", "value1"),), (), b"", None, "host;x-amz-date",
        "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"),
    "get-utf8": ("GET", "/ሴ", (), (), b"", None, "host;x-amz-date",
                 "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
    "get-space": ("GET", "/example space/", (), (), b"", None, "host;x-amz-date",
                  "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"),
    "get-header-value-trim": (
        "GET", "/", (), (("My-Header1", " value1"), ("My-Header2", '"a   b   c"')), b"", None,
        "host;my-header1;my-header2;x-amz-date",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
    "post-vanilla": ("POST", "/", (), (), b"", None, "host;x-amz-date",
                     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    "post-vanilla-query": (
        "POST", "/", (("Param1", "value1"),), (), b"", None, "host;x-amz-date",
        "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
    "post-x-www-form-urlencoded": (
        "POST", "/", (), FORM, b"Param1=value1", None, "content-type;host;x-amz-date",
        "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    "post-sts-header-before": (
        "POST", "/", (), (), b"", SESSION_TOKEN, "host;x-amz-date;x-amz-security-token",
        "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"),
}


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_sign_v4_matches_published_test_suite(vector: tuple[Any, ...]) -> None:
    """The Authorization header equals the one AWS's test suite publishes."""
    method, path, query, headers, body, token, signed, signature = vector
    added = dict(sign_v4(method=method, path=path, query=query, headers=headers, payload=body,
                         session_token=token, now=SUITE_TIME, **SUITE))
    assert added["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}")
    assert added["X-Amz-Date"] == "20150830T123600Z"


def test_canonical_request_matches_suite_for_form_post() -> None:
    """The canonical request of post-x-www-form-urlencoded is the suite's, line for line."""
    text, signed = canonical_request(
        "POST", "/", (),
        [*FORM, ("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")],
        "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e", service="service")
    assert text == (
        "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n"
        "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
        "content-type;host;x-amz-date\n"
        "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e")
    assert signed == "content-type;host;x-amz-date"


def test_signing_key_matches_aws_documentation_example() -> None:
    """The derived key for the documented example (20120215, us-east-1, iam) is AWS's."""
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_sign_v4_s3_signs_path_as_sent_with_payload_hash() -> None:
    """For S3 the path is not re-encoded and X-Amz-Content-SHA256 is added and signed."""
    added = dict(sign_v4(method="PUT", path="/my%20key", query=(), headers=(), payload=b"x",
                         now=SUITE_TIME, **{**SUITE, "service": "s3"}))
    assert added["X-Amz-Content-SHA256"] == (
        "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881")
    assert "x-amz-content-sha256" in added["Authorization"]


CROSS_CHECKS: dict[str, tuple[Any, ...]] = {
    "sts_form_post_with_token": (
        "sts", "POST", "https://sts.amazonaws.com/", {"query_params": {"Version": "2011-06-15"},
                                                      "body": {"Action": "GetCallerIdentity"}},
        "FQoGZXIvYXdzEXAMPLETOKEN//+="),
    "encoded_and_unicode_path": (
        "execute-api", "GET", "https://abc.execute-api.amazonaws.com/prod/a%20b/ሴ/c%2Fd/./e",
        {"query_params": {"q": "x y", "b": "2", "a": ["é", "1"]}}, None),
    "json_put_with_headers": (
        "dynamodb", "PUT", "https://dynamodb.amazonaws.com/",
        {"json": {"TableName": "t"}, "headers": {"X-Amz-Target": "DynamoDB_20120810.ListTables",
                                                 "My-Header": "  a   b  "}}, None),
    "s3_put_object": (
        "s3", "PUT", "https://bucket.s3.amazonaws.com/photos/my%20cat.jpg",
        {"body": b"\x00\x01binary", "headers": {"Content-Type": "image/jpeg"}}, None),
}


@pytest.mark.parametrize("check", CROSS_CHECKS.values(), ids=CROSS_CHECKS.keys())
def test_inject_sigv4_matches_botocore(check: tuple[Any, ...]) -> None:
    """The whole injected request signs exactly as botocore signs the same wire request."""
    pytest.importorskip("botocore", reason="botocore (the `aws` extra) is the cross-check")
    service, method, url, kwargs, token = check
    host = url.split("/")[2]
    fields = ("access_key_id", "secret_access_key", "region", "session_token")
    provider = make_provider(Injection(kind=InjectionKind.AWS_SIGV4), hosts=(host,),
                             aws_service=service, fields=fields)
    prepared = prepare(provider, method, url, **kwargs)
    values = {"access_key_id": SUITE["access_key_id"], "region": "eu-west-1",
              "secret_access_key": SUITE["secret_access_key"]}
    if token:
        values["session_token"] = token
    outbound = inject(prepared, provider, credential(**values), now=SUITE_TIME)
    ours = dict(outbound.headers)
    unsigned = {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
    wire_headers = {k: v for k, v in outbound.headers if k.lower() not in unsigned}
    theirs = botocore_authorization(method, outbound.url, wire_headers,
                                     outbound.content or b"", service, token)
    assert ours["Authorization"] == theirs
