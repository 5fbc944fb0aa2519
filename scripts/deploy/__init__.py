"""Deploy steps for the ECS service, called by .github/workflows/deploy-environment.yml.

    python3 -m scripts.deploy <command> --help

Each command is one step of a deploy: `current` records what runs now (the rollback target),
`render-task-definition` registers a revision with new image tags, `run-migration` runs
`api migrate up` as a one-off task and waits for its exit code and log, `update-service`
rolls the service onto the revision and waits until the rollout completes (or the circuit
breaker rolls it back), `rollback` puts the service back on the recorded or the previous
revision, and `summary` / `plan-comment` write Markdown for the job summary and pull requests.

Every AWS call goes through one boto3 session built from the standard environment
(`aws.Clients`), so AWS_ENDPOINT_URL points the commands at the emulator in the tests
(test_deploy.py).
"""
