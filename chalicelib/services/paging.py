"""Reading a whole paged list when a use case needs every item (a plan's executors)."""

from __future__ import annotations

from chalicelib.domain.ports import ExecutorQuery, Store

# Items read per page when walking a whole list.
WALK_PAGE = 500


def plan_executor_ids(store: Store, plan_id: str) -> list[str]:
    """The ids of every executor of a plan, committed or not, in a page-sized read each."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = store.list_executors(
            ExecutorQuery(executed=None, plan_id=plan_id), WALK_PAGE, cursor
        )
        ids.extend(executor.id for executor in page.items)
        if page.cursor is None:
            return ids
        cursor = page.cursor
