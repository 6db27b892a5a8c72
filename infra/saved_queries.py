"""The searches `klikit events` and `klikit doctor` run, saved as Logs Insights queries for the console."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import insights


class SavedQueriesConstruct(Construct):
    """One AWS::Logs::QueryDefinition per search, over both functions' log groups, in the console folder `folder`."""

    def __init__(self, scope: Construct, construct_id: str, *, folder: str, log_groups: Sequence[logs.ILogGroup]):
        super().__init__(scope, construct_id)
        self.definitions: dict[str, logs.CfnQueryDefinition] = {}
        for name, text in insights.saved_queries().items():
            # The L1 resource takes the query text as is: the very text the CLI runs (the L2 rebuilds it from parts).
            self.definitions[name] = logs.CfnQueryDefinition(
                self,
                name,
                name=f"{folder}/{name}",
                query_string=text,
                log_group_names=[group.log_group_name for group in log_groups],
            )
