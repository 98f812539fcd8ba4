"""``/admin/v1/tenants/{slug}/users/{user_id}``: an operator's view of one user, and blocking.

Users come from the identity provider (SCIM); the operator's one lever is the block
(CONTRACT §1: ``blocked`` is the IdP's deactivation or an operator's block). Blocking ends the
user's sessions at once.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields

from admin.common import admin_blueprint, documented
from app import runtime, tenants, users
from app.models import User
from app.schemas import Strict

blp = admin_blueprint("users", "Users of a tenant, as its identity provider provisioned them.")


class UserView(Schema):
    id = fields.String(required=True, metadata={"description": "The IdP's id of the user."})
    scim_id = fields.String(required=True)
    user_name = fields.String(required=True)
    customer = fields.String(allow_none=True, required=True)
    email = fields.String(allow_none=True, required=True)
    email_verified = fields.Boolean(required=True)
    active = fields.Boolean(required=True, metadata={"description": "SCIM `active`."})
    operator_blocked = fields.Boolean(required=True)
    blocked = fields.Boolean(required=True)
    logins_count = fields.Integer(required=True)
    login_time = fields.DateTime(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class UserPatch(Strict):
    blocked = fields.Boolean(
        required=True, metadata={"description": "Block (true) or unblock (false) the user."}
    )


def _view(user: User) -> dict[str, Any]:
    names = set(UserView().fields) - {"id"}
    return {"id": user.subject} | {name: getattr(user, name) for name in names}


@blp.route("/tenants/<slug:slug>/users/<user_id>")
class UserItem(MethodView):
    @blp.response(200, UserView)
    @documented(blp, 404)
    def get(self, slug: str, user_id: str) -> dict[str, Any]:
        """Get a user"""
        with runtime.current().db.read() as session:
            tenants.find(session, slug)
            return _view(users.by_subject(session, user_id))

    @blp.arguments(UserPatch)
    @blp.response(200, UserView)
    @documented(blp, 400, 404)
    def patch(self, data: dict[str, Any], slug: str, user_id: str) -> dict[str, Any]:
        """Block or unblock a user

        Blocking ends every session of the user before the answer: tokens issued up to now
        are refused by userinfo (and token exchange) on every instance.
        """
        with runtime.current().db.transaction() as session:
            tenants.find(session, slug)
            user = users.by_subject(session, user_id)
            users.set_operator_block(session, user, data["blocked"])
            session.flush()
            return _view(user)
