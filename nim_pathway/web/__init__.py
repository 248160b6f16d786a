"""The workbench: a small Starlette app for people (issue 29).

Sign in with a handle and a one-time code (a session from `IdentityCommands.login`, held in an
HttpOnly, SameSite=Strict cookie); then "My work", the manager's board, each case's timeline
and KPI pictures, and the coordinator's forms. Every page acts only as the person whose
session cookie it carries, and every action runs the same domain command as the CLI, so the
policy refuses exactly what it refuses there. No identity (names, dates of birth, addresses)
is shown, logged or put in a URL: case references, child and caregiver keys and roles only."""

from nim_pathway.web.app import create_app

__all__ = ["create_app"]
