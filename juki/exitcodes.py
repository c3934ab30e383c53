"""CLI exit codes. Scripts and systemd units rely on these; they are part of the interface."""

OK = 0
FAILURE = 1  # the command ran and failed (a check found problems, a node refused)
CONFIG = 2  # appliance.toml, arguments or keys are wrong
BROKER = 3  # RabbitMQ cannot be reached
NODE_DOWN = 4  # a node's control socket does not answer
VERIFY = 5  # an integrity check failed (audit chain, consistency)
INTERRUPTED = 130

DOCUMENTED = {
    OK: "success",
    FAILURE: "the command ran and reported a failure",
    CONFIG: "configuration, argument or key error",
    BROKER: "RabbitMQ unreachable",
    NODE_DOWN: "a node is not running or not answering",
    VERIFY: "an integrity check failed",
    INTERRUPTED: "interrupted by the user",
}
