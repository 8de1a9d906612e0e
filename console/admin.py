"""The administrator's pages: console accounts (add, disable, enable, change the role of, set a password: the same ``store.users``
as ``healthqa users``, each change in the audit log with the administrator's name) and the audit log."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from healthqa.store.users import ROLES, UserError, normalise_name

from .auth import Who, check_csrf, role

router = APIRouter(prefix="/admin")
admin = role("admin")


@router.get("/users", response_class=HTMLResponse)
def users(request: Request, who: Who = Depends(admin)):
    return request.app.state.render(request, "users.html.j2", who=who, users=request.app.state.store.users.list(),
                                    roles=ROLES)


def _user_change(fn):
    try:
        fn()
    except UserError as e:
        raise HTTPException(400, str(e)) from None
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/users", dependencies=[Depends(check_csrf)])
def add(request: Request, who: Who = Depends(admin), name: str = Form(...), user_role: str = Form(..., alias="role"),
        password: str = Form(...)):
    return _user_change(lambda: request.app.state.store.users.add(name, user_role, password, actor=who.name))


def _yourself(name: str, who: Who) -> bool:
    """``name`` is the administrator's own account in any spelling the store takes for it (LiHua,
    ｌｉｈｕａ, " lihua "): compared as the store names accounts, not as typed."""
    try:
        return normalise_name(name) == normalise_name(who.name)
    except UserError:
        return False


@router.post("/users/{name}/disable", dependencies=[Depends(check_csrf)])
def disable(request: Request, name: str, who: Who = Depends(admin)):
    if _yourself(name, who):
        raise HTTPException(400, "不能停用自己的账户 / you cannot disable your own account")
    return _user_change(lambda: request.app.state.store.users.disable(name, actor=who.name))


@router.post("/users/{name}/enable", dependencies=[Depends(check_csrf)])
def enable(request: Request, name: str, who: Who = Depends(admin)):
    return _user_change(lambda: request.app.state.store.users.enable(name, actor=who.name))


@router.post("/users/{name}/role", dependencies=[Depends(check_csrf)])
def set_role(request: Request, name: str, who: Who = Depends(admin), user_role: str = Form(..., alias="role")):
    if _yourself(name, who):
        raise HTTPException(400, "不能更改自己的角色 / you cannot change your own role")
    return _user_change(lambda: request.app.state.store.users.set_role(name, user_role, actor=who.name))


@router.post("/users/{name}/passwd", dependencies=[Depends(check_csrf)])
def passwd(request: Request, name: str, who: Who = Depends(admin), password: str = Form(...)):
    return _user_change(lambda: request.app.state.store.users.passwd(name, password, actor=who.name))


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, who: Who = Depends(admin), user: str | None = None):
    return request.app.state.render(request, "audit.html.j2", who=who, rows=request.app.state.store.review.audit(
        user=user or None, limit=500), user=user)
