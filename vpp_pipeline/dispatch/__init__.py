"""Bid & Dispatch, dispatch side: notifications -> events -> plans -> site commands (ops store only)."""
