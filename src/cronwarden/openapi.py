"""The OpenAPI 3.1 description of ``/api/v1/``, served at ``/api/v1/openapi.json``.

Written by hand, next to the handlers it describes; a test checks that every
``/api/v1/`` route of the application appears here and the reverse.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import __version__

_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(schema: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _body(properties: dict[str, Any]) -> dict[str, Any]:
    return {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "properties": properties}}}}


NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
BY = {"by": {"type": "string", "description": "who acts (recorded in the timeline)"}}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "cronwarden", "version": __version__,
             "description": "Monitor cron jobs and background jobs. Pings are under /ping/ (not listed: see "
                            "the README); this is the management API. When an API token is configured, "
                            "send Authorization: Bearer TOKEN."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
            "Monitor": {"type": "object", "properties": {
                "name": {"type": "string"},
                "status": {"type": "string", "enum": ["new", "up", "running", "late", "down", "paused"]},
                "schedule": {"type": "object"}, "severity": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "created_at": {"type": ["string", "null"]}, "last_ping": {"type": ["string", "null"]},
                "last_success": {"type": ["string", "null"]}, "next_due": {"type": ["string", "null"]},
                "last_duration_s": {"type": ["number", "null"]}, "consecutive_failures": {"type": "integer"},
                "running": {"type": "array", "items": {"type": "object"}},
                "incident": {"type": ["object", "null"]}, "paused": {"type": ["object", "null"]}},
                "required": ["name", "status"]},
            "MonitorDetail": {"allOf": [{"$ref": "#/components/schemas/Monitor"}, {"type": "object", "properties": {
                "runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
                "pings": {"type": "integer"}, "durations": {"type": ["object", "null"]}}}]},
            "Run": {"type": "object", "properties": {
                "started_at": {"type": ["string", "null"]}, "ended_at": {"type": ["string", "null"]},
                "duration_s": {"type": ["number", "null"]}, "exit_status": {"type": ["integer", "null"]},
                "rid": {"type": ["string", "null"]}, "metadata": {"type": ["object", "null"]},
                "output": {"type": "string"}}},
            "MonitorList": {"type": "object", "properties": {
                "monitors": {"type": "array", "items": {"$ref": "#/components/schemas/Monitor"}}}},
            "Incident": {"type": "object", "properties": {
                "id": {"type": "integer"}, "monitor": {"type": "string"}, "event": {"type": "string"},
                "severity": {"type": "string"}, "summary": {"type": "string"},
                "opened_at": {"type": "string"}, "closed_at": {"type": ["string", "null"]},
                "open": {"type": "boolean"}}, "required": ["id", "monitor", "event", "open"]},
            "IncidentDetail": {"allOf": [{"$ref": "#/components/schemas/Incident"}, {"type": "object", "properties": {
                "timeline": {"type": "array", "items": {"type": "object"}},
                "deliveries": {"type": "array", "items": {"type": "object"}}}}]},
            "IncidentList": {"type": "object", "properties": {
                "incidents": {"type": "array", "items": {"$ref": "#/components/schemas/Incident"}}}},
            "Done": {"type": "object"},
            "TestAlert": {"type": "object", "properties": {
                "channel": {"type": "string"}, "type": {"type": "string"}, "delivered": {"type": "boolean"},
                "state": {"type": ["string", "null"]}, "status": {"type": ["integer", "null"]},
                "answer": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]}}},
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/monitors": {"get": {"summary": "every monitor and its state",
                                     "responses": {"200": _json("MonitorList"), "401": _ERROR}}},
        "/api/v1/monitors/{name}": {"get": {
            "summary": "one monitor with its recent runs and duration statistics",
            "parameters": [NAME, {"name": "runs", "in": "query", "schema": {"type": "integer", "maximum": 500}}],
            "responses": {"200": _json("MonitorDetail"), "404": _ERROR}}},
        "/api/v1/monitors/{name}/pause": {"post": {
            "summary": "pause a monitor", "parameters": [NAME],
            "requestBody": _body({**BY, "for": {"type": "string", "example": "2h"}, "reason": {"type": "string"}}),
            "responses": {"200": _json("Done"), "404": _ERROR, "409": _ERROR}}},
        "/api/v1/monitors/{name}/resume": {"post": {
            "summary": "resume a paused monitor", "parameters": [NAME], "requestBody": _body(BY),
            "responses": {"200": _json("Done"), "404": _ERROR, "409": _ERROR}}},
        "/api/v1/incidents": {"get": {
            "summary": "incidents, newest first",
            "parameters": [{"name": "monitor", "in": "query", "schema": {"type": "string"}},
                           {"name": "open", "in": "query", "schema": {"type": "string", "enum": ["1", "true"]}}],
            "responses": {"200": _json("IncidentList")}}},
        "/api/v1/incidents/{id}": {"get": {
            "summary": "one incident with its timeline and delivery attempts", "parameters": [ID],
            "responses": {"200": _json("IncidentDetail"), "404": _ERROR}}},
        "/api/v1/incidents/{id}/postmortem": {"get": {
            "summary": "a post-mortem draft", "parameters": [ID],
            "responses": {"200": {"description": "Markdown", "content": {"text/markdown": {}}}, "404": _ERROR}}},
        "/api/v1/incidents/{id}/ack": {"post": {
            "summary": "acknowledge: reminders and escalation stop", "parameters": [ID],
            "requestBody": _body({**BY, "note": {"type": "string"}}),
            "responses": {"200": _json("Done"), "404": _ERROR, "409": _ERROR}}},
        "/api/v1/incidents/{id}/resolve": {"post": {
            "summary": "close an incident by hand", "parameters": [ID],
            "requestBody": _body({**BY, "note": {"type": "string"}}),
            "responses": {"200": _json("Done"), "404": _ERROR, "409": _ERROR}}},
        "/api/v1/incidents/{id}/notes": {"post": {
            "summary": "add a note to the timeline", "parameters": [ID],
            "requestBody": _body({**BY, "text": {"type": "string"}}),
            "responses": {"200": _json("Done"), "400": _ERROR, "404": _ERROR}}},
        "/api/v1/channels/{name}/test": {"post": {
            "summary": "send a test alert through a channel", "parameters": [NAME],
            "responses": {"200": _json("TestAlert"), "502": _json("TestAlert", "not delivered"), "404": _ERROR}}},
        "/api/v1/openapi.json": {"get": {"summary": "this document", "security": [],
                                         "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    },
}


async def handle(request: web.Request) -> web.Response:
    return web.json_response(SPEC)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/openapi.json", handle)
