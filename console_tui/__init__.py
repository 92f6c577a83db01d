"""console_tui: the officials' race-control console (Textual).

Live leaderboard, groups, alerts and relays; race control (start, neutralise, resume,
penalties, DNF/DNS/DSQ, reinstate, finish, publish) against the cloud, or the event relay
when the cloud is out of reach, or a local queue when neither is. Run it with
``gruppetto console``; see docs/console.md.
"""
