"""Look-ups over the configured instruments and accounts that every risk module needs."""

from __future__ import annotations

from collections.abc import Mapping

from configs.schema import AccountCfg, InstrumentCfg


class Catalog:
    """Instrument keys by key or by (venue, venue symbol); accounts by venue and sub-account."""

    def __init__(
        self,
        instruments: Mapping[str, InstrumentCfg],
        accounts: Mapping[str, AccountCfg] | None = None,
    ) -> None:
        self.instruments = dict(instruments)
        self.accounts = dict(accounts or {})
        self._by_symbol = {(i.venue, i.symbol): k for k, i in self.instruments.items()}
        self._sub_parent = {s.name: a for a, acct in self.accounts.items() for s in acct.sub_accounts}

    def resolve(self, venue: str, name: str) -> str | None:
        """Instrument key for `name` given as a key or as the venue's own symbol."""
        inst = self.instruments.get(name)
        if inst is not None and inst.venue == venue:
            return name
        key = self._by_symbol.get((venue, name))
        if key is not None:
            return key
        return name if inst is not None else None

    def account_for_venue(self, venue: str) -> str | None:
        """The first account whose `venues` lists `venue`."""
        for name, acct in self.accounts.items():
            if venue in acct.venues:
                return name
        return None

    def account_of(self, instrument: str) -> str | None:
        """The account that trades `instrument` (by its venue)."""
        inst = self.instruments.get(instrument)
        return None if inst is None else self.account_for_venue(inst.venue)

    def parent_account(self, name: str) -> str | None:
        """`name` if it is an account, its parent if it is a sub-account, else None."""
        if name in self.accounts:
            return name
        return self._sub_parent.get(name)
