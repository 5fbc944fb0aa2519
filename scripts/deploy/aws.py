"""boto3 clients for the deploy commands, built from the standard AWS environment."""

import os

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

# Standard retry mode backs off on throttling and 5xx; a deploy makes few calls, so a few
# more attempts cost nothing and ride out a throttled DescribeServices during a rollout.
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 8},
    connect_timeout=10,
    read_timeout=60,
)


class DeployError(Exception):
    """A deploy step failed; the message says why. The CLI prints it and exits 1."""


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


class Clients:
    """One session, one client per service, all from `env` (default: the process environment).

    Credentials, region and AWS_ENDPOINT_URL come from `env` when it has them; otherwise boto3's
    default chain applies (in GitHub Actions: the OIDC role that configure-aws-credentials
    exported). Passing `env` explicitly lets the tests point at the emulator without touching
    os.environ.
    """

    def __init__(self, env=None):
        env = os.environ if env is None else env
        self._session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        )
        self._endpoint_url = env.get("AWS_ENDPOINT_URL") or None
        self._clients = {}

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self._session.client(
                service, endpoint_url=self._endpoint_url, config=_CONFIG
            )
        return self._clients[service]

    @property
    def ecs(self):
        return self.client("ecs")

    @property
    def ecr(self):
        return self.client("ecr")

    @property
    def logs(self):
        return self.client("logs")
