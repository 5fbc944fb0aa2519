"""Task definitions: render a new revision with other image tags, find the rollback target."""

import re
from dataclasses import dataclass

from botocore.exceptions import ClientError

from .aws import DeployError, error_code

# What DescribeTaskDefinition returns but RegisterTaskDefinition refuses (or would ignore):
# everything ECS sets itself.
READ_ONLY_FIELDS = (
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
)

_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repository>[a-z0-9][a-z0-9._/-]*)$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Image:
    """A container image reference split into repository, tag and digest."""

    repository: str  # registry/path, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/app-prod/api
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, uri: str) -> "Image":
        rest, _, digest = uri.partition("@")
        # A tag is what follows the last ':' after the last '/' (a registry may have a port).
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            return cls(rest[:colon], rest[colon + 1 :], digest or None)
        return cls(rest, None, digest or None)

    def with_tag(self, tag: str) -> str:
        if not _TAG.match(tag):
            raise DeployError(f"not a valid image tag: {tag!r}")
        return f"{self.repository}:{tag}"

    def ecr(self):
        """(account, region, repository name) when the image lives in ECR, else None."""
        match = _ECR_IMAGE.match(self.repository)
        if not match:
            return None
        return match["account"], match["region"], match["repository"]


def family_and_revision(arn: str) -> tuple[str, int]:
    """`arn:aws:ecs:...:task-definition/app-prod-api:12` (or `app-prod-api:12`) -> (family, 12)."""
    name = arn.rsplit("/", 1)[-1]
    family, _, revision = name.rpartition(":")
    if not family or not revision.isdigit():
        raise DeployError(f"not a task definition ARN with a revision: {arn}")
    return family, int(revision)


def images_with_tag(task_definition: dict, containers: list[str], tag: str) -> dict[str, str]:
    """The image of each named container with its tag (or digest) replaced by `tag`."""
    by_name = {c["name"]: c for c in task_definition["containerDefinitions"]}
    unknown = [name for name in containers if name not in by_name]
    if unknown:
        raise DeployError(
            f"no container named {', '.join(unknown)} in {task_definition.get('family')} "
            f"(containers: {', '.join(sorted(by_name))})"
        )
    return {name: Image.parse(by_name[name]["image"]).with_tag(tag) for name in containers}


def render(task_definition: dict, images: dict[str, str]) -> dict:
    """The RegisterTaskDefinition request that copies `task_definition` with new images.

    Pure: `task_definition` is DescribeTaskDefinition's `taskDefinition`; `images` maps container
    names to full image URIs. Everything else (environment, secrets, health checks, log
    configuration, roles, sizes) is kept as it is, so settings that Terraform changed since
    the last deploy carry over.
    """
    names = {c["name"] for c in task_definition["containerDefinitions"]}
    unknown = sorted(set(images) - names)
    if unknown:
        raise DeployError(f"no container named {', '.join(unknown)} in the task definition")
    request = {k: v for k, v in task_definition.items() if k not in READ_ONLY_FIELDS}
    request["containerDefinitions"] = [
        {**c, "image": images.get(c["name"], c["image"])}
        for c in task_definition["containerDefinitions"]
    ]
    return request


def describe(clients, task_definition: str) -> tuple[dict, list]:
    """(taskDefinition, tags) of an ARN or family:revision."""
    try:
        response = clients.ecs.describe_task_definition(
            taskDefinition=task_definition, include=["TAGS"]
        )
    except ClientError as error:
        raise DeployError(f"cannot describe task definition {task_definition}: {error}") from error
    return response["taskDefinition"], response.get("tags") or []


def register(clients, request: dict, tags: list) -> str:
    """Register `request` (from `render`) with `tags`; the new revision's ARN."""
    params = dict(request)
    if tags:
        params["tags"] = tags
    try:
        response = clients.ecs.register_task_definition(**params)
    except ClientError as error:
        raise DeployError(f"RegisterTaskDefinition failed: {error}") from error
    return response["taskDefinition"]["taskDefinitionArn"]


def verify_images_exist(clients, uris) -> None:
    """Fail unless every ECR image among `uris` is in its repository (a typo or a build that
    never pushed would otherwise only show up as tasks that cannot pull their image)."""
    missing = []
    for uri in uris:
        image = Image.parse(uri)
        location = image.ecr()
        if location is None:
            continue  # not in ECR: nothing we can check with these credentials
        account, _region, repository = location
        image_id = {"imageDigest": image.digest} if image.digest else {"imageTag": image.tag}
        try:
            clients.ecr.describe_images(
                registryId=account, repositoryName=repository, imageIds=[image_id]
            )
        except ClientError as error:
            if error_code(error) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                missing.append(f"{uri} ({error_code(error)})")
            else:
                raise DeployError(f"cannot check {uri} in ECR: {error}") from error
    if missing:
        raise DeployError("image not found in ECR: " + "; ".join(missing))


def previous_active(clients, current_arn: str) -> str:
    """The ACTIVE revision of `current_arn`'s family with the highest number below it."""
    family, _revision = family_and_revision(current_arn)
    arns = []
    paginator = clients.ecs.get_paginator("list_task_definitions")
    for page in paginator.paginate(familyPrefix=family, status="ACTIVE", sort="DESC"):
        arns.extend(page["taskDefinitionArns"])
    return latest_before(arns, current_arn)


def latest_before(arns, current_arn: str) -> str:
    """Of `arns`, the highest revision of `current_arn`'s family below its revision.

    ListTaskDefinitions' familyPrefix matches by prefix (app-prod-api also lists
    app-prod-api-worker), so the family is compared exactly here.
    """
    family, revision = family_and_revision(current_arn)
    earlier = []
    for arn in arns:
        other_family, other_revision = family_and_revision(arn)
        if other_family == family and other_revision < revision:
            earlier.append((other_revision, arn))
    if not earlier:
        raise DeployError(f"no ACTIVE revision of {family} before revision {revision}")
    return max(earlier)[1]
