"""Deleting a variant that has scale actions or decisions is rejected.

Scale actions and decisions cascade with their variant (the control models
use `on_delete=CASCADE`), so a delete would erase the approval history. A
`pre_delete` receiver raises `VariantHistoryProtected`, a `ProtectedError`,
for every delete path: `Variant.delete()`, a queryset delete and the admin.
The API and the admin also check first and return the same message.
A variant without history may be deleted; its samples and state go with it.
"""

from __future__ import annotations

from typing import Any

from django.db.models import ProtectedError

from wva_web.catalog.models import Variant
from wva_web.control.models import Decision, ScaleAction


class VariantHistoryProtected(ProtectedError):
    """A delete of a variant whose scale actions or decisions would be lost."""


def history_counts(variant: Variant) -> tuple[int, int]:
    """Return the number of scale actions and decisions of the variant."""
    actions = ScaleAction.objects.filter(variant_id=variant.pk).count()
    decisions = Decision.objects.filter(variant_id=variant.pk).count()
    return actions, decisions


def history_message(variant: Variant, actions: int, decisions: int) -> str:
    return (
        f"variant {variant.name} has {actions} scale action(s) and {decisions} "
        "decision(s), and deleting it would erase that approval history. "
        "Set its mode to advisory instead, which stops every scale action"
    )


def delete_error(variant: Variant) -> str | None:
    """Return why the variant may not be deleted, or None when it has no history."""
    actions, decisions = history_counts(variant)
    if actions == 0 and decisions == 0:
        return None
    return history_message(variant, actions, decisions)


def reject_delete_with_history(sender: type, instance: Variant, **kwargs: Any) -> None:
    """Raise `VariantHistoryProtected` before a variant with history is deleted."""
    message = delete_error(instance)
    if message is None:
        return
    # A sample of the rows that block the delete; the message gives the counts.
    protected = [
        *ScaleAction.objects.filter(variant_id=instance.pk)[:20],
        *Decision.objects.filter(variant_id=instance.pk)[:20],
    ]
    raise VariantHistoryProtected(message, set(protected))
