"""A small client of the Dagster webserver's GraphQL API: partitions, backfills, runs, checks.

The command line uses it to submit backfills to a running instance (local or shared), so the
runs go through the daemon's queue and its concurrency limits like runs launched from the UI.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

DEFAULT_WEBSERVER_URL = "http://127.0.0.1:3000"


class WebserverError(RuntimeError):
    """Raised when the webserver cannot be reached or a GraphQL request returns an error."""


@dataclass(frozen=True)
class RepositorySelector:
    """The code location and repository that define a job."""

    location: str
    repository: str

    def as_variables(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": self.repository}


_REPOSITORIES = """
query Repositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } jobs { name } } }
    ... on PythonError { message }
  }
}
"""

_ADD_PARTITION = """
mutation AddPartition($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(
    repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key
  ) {
    __typename
    ... on DuplicateDynamicPartitionError { partitionName }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

_LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on RunConflict { message }
    ... on ConflictingExecutionParamsError { message }
    ... on PresetNotFoundError { message }
    ... on NoModeProvidedError { message }
  }
}
"""

_BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions runs(limit: 1000) { runId status } }
    ... on PythonError { message }
    ... on BackfillNotFoundError { message }
  }
}
"""

_RUNS = """
query Runs($filter: RunsFilter, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs { results { runId jobName status tags { key value } } }
    ... on PythonError { message }
    ... on InvalidPipelineRunsFilterError { message }
  }
}
"""


class DagsterWebserverClient:
    """Send GraphQL requests to a Dagster webserver, by default the local one on 127.0.0.1."""

    def __init__(self, url: str = DEFAULT_WEBSERVER_URL, timeout_seconds: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds

    def execute(self, query: str, variables: dict | None = None) -> dict:
        """Return the `data` of a GraphQL request, or raise WebserverError with its errors."""
        try:
            response = requests.post(
                f"{self.url}/graphql",
                json={"query": query, "variables": variables or {}},
                timeout=self.timeout_seconds,
            )
        except requests.ConnectionError as error:
            raise WebserverError(
                f"No Dagster webserver responds at {self.url}; start it with `make ui` (or pass "
                "--webserver with the right address, or --in-process to run without it)."
            ) from error
        except requests.Timeout as error:
            raise WebserverError(
                f"The Dagster webserver at {self.url} timed out after {self.timeout_seconds} s."
            ) from error
        if response.status_code != 200:
            raise WebserverError(
                f"The Dagster webserver at {self.url} returned HTTP {response.status_code}: "
                f"{response.text[:500]}"
            )
        body = response.json()
        if body.get("errors"):
            messages = "; ".join(error.get("message", "") for error in body["errors"])
            raise WebserverError(f"GraphQL request to {self.url} failed: {messages}")
        return body["data"]

    def find_job(self, job_name: str) -> RepositorySelector:
        """Return the repository that defines `job_name`, or raise naming the jobs found."""
        result = self.execute(_REPOSITORIES)["repositoriesOrError"]
        if result["__typename"] != "RepositoryConnection":
            raise WebserverError(f"Listing repositories failed: {result.get('message')}")
        seen = []
        for node in result["nodes"]:
            names = [job["name"] for job in node["jobs"]]
            if job_name in names:
                return RepositorySelector(node["location"]["name"], node["name"])
            seen.extend(names)
        raise WebserverError(
            f"Job {job_name!r} not found on the webserver at {self.url} (jobs: {sorted(seen)}); "
            "check that it serves the eval_pipeline code location."
        )

    def add_dynamic_partition(
        self, selector: RepositorySelector, partitions_def: str, key: str
    ) -> bool:
        """Add `key` to a dynamic partitions definition; return False when it already existed."""
        result = self.execute(
            _ADD_PARTITION,
            {"selector": selector.as_variables(), "name": partitions_def, "key": key},
        )["addDynamicPartition"]
        kind = result["__typename"]
        if kind == "AddDynamicPartitionSuccess":
            return True
        if kind == "DuplicateDynamicPartitionError":
            return False
        raise WebserverError(f"Adding partition {key!r} failed ({kind}): {result.get('message')}")

    def launch_backfill(
        self,
        selector: RepositorySelector,
        job_name: str,
        partition_keys: list[str],
        tags: dict[str, str],
        title: str | None = None,
    ) -> str:
        """Submit a backfill of `job_name` over `partition_keys`; return the backfill id."""
        params = {
            "selector": {
                "partitionSetName": f"{job_name}_partition_set",
                "repositorySelector": selector.as_variables(),
            },
            "partitionNames": partition_keys,
            "tags": [{"key": key, "value": value} for key, value in tags.items()],
        }
        if title:
            params["title"] = title
        result = self.execute(_LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            detail = result.get("message") or result
            raise WebserverError(
                f"Launching the backfill failed ({result['__typename']}): {detail}"
            )
        return result["backfillId"]

    def backfill(self, backfill_id: str) -> dict:
        """Return the status, partition count and runs of a backfill."""
        result = self.execute(_BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise WebserverError(f"Backfill {backfill_id!r}: {result.get('message')}")
        return result

    def runs(self, job_name: str | None = None, limit: int = 100) -> list[dict]:
        """Return the latest runs (newest first), optionally of one job, with tags as a dict."""
        run_filter = {"pipelineName": job_name} if job_name else {}
        result = self.execute(_RUNS, {"filter": run_filter, "limit": limit})["runsOrError"]
        if result["__typename"] != "Runs":
            raise WebserverError(f"Listing runs failed: {result.get('message')}")
        return [
            {**run, "tags": {tag["key"]: tag["value"] for tag in run["tags"]}}
            for run in result["results"]
        ]
