"""Small factories for tests: each makes a valid object with sensible defaults."""

import itertools

from django.contrib.auth import get_user_model
from django.utils import timezone

from contacts.models import Contact, Membership, Organization
from conversations.models import Conversation, Message, Sender

_seq = itertools.count(1)


def make_org(name=None, **fields):
    n = next(_seq)
    name = name or f"Org {n}"
    return Organization.objects.create(name=name, slug=fields.pop("slug", f"org-{n}"), **fields)


def make_user(username=None, password="pw", **fields):
    username = username or f"user{next(_seq)}"
    return get_user_model().objects.create_user(username=username, password=password, **fields)


def make_member(org, role=Membership.Role.STAFF, username=None):
    user = make_user(username)
    Membership.objects.create(user=user, organization=org, role=role)
    return user


def make_org_and_manager():
    """The organization and manager that conftest's `org` and `owner` make, for the rows a
    module's tests share."""
    org = make_org("Riverside Test Club", slug="riverside-test")
    return org, make_member(org, Membership.Role.MANAGER, username="owner")


def make_contact(org, phone="+12125550100", first_name="Pat", last_name=None, **fields):
    contact = Contact(
        organization=org,
        first_name=first_name,
        last_name=last_name if last_name is not None else f"Member{next(_seq)}",
        **fields,
    )
    contact.set_phone(phone)
    contact.save()
    return contact


def make_sender(org, phone_number=None, kind=Sender.Kind.LONG_CODE, throughput=1, **fields):
    phone_number = phone_number if phone_number is not None else f"+1415555{next(_seq):04d}"
    return Sender.objects.create(
        organization=org, phone_number=phone_number, kind=kind, throughput=throughput, **fields
    )


def make_conversation(contact):
    conversation = Conversation.objects.filter(contact=contact).first()
    if conversation is None:  # tests make rows one at a time: no race to guard against
        conversation = Conversation.objects.create(
            contact=contact, organization=contact.organization
        )
    return conversation


def make_message(contact, sender=None, status=Message.Status.DELIVERED, **fields):
    conversation = make_conversation(contact)
    fields.setdefault("direction", Message.Direction.OUTBOUND)
    fields.setdefault("body", "Hello from the club")
    fields.setdefault("to_number", contact.phone_e164)
    if sender is not None:
        fields.setdefault("from_number", sender.address)
    message = Message.objects.create(
        organization=contact.organization,
        conversation=conversation,
        sender=sender,
        status=status,
        **fields,
    )
    conversation.last_message_at = message.created_at or timezone.now()
    conversation.last_message_preview = message.body[:160]
    conversation.save(update_fields=["last_message_at", "last_message_preview"])
    return message


def sign_in(client, user):
    """Sign `client` in as `user` through a session row made directly: the login itself (its
    signals, the lockout records) is tested where it matters, not paid again by every page test.
    One INSERT: the session store's own create() looks the new key up and saves in a savepoint."""
    from datetime import timedelta
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.base import VALID_KEY_CHARS
    from django.utils.crypto import get_random_string

    store = import_module(settings.SESSION_ENGINE).SessionStore
    data = {
        SESSION_KEY: user._meta.pk.value_to_string(user),
        BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
        HASH_SESSION_KEY: user.get_session_auth_hash(),
    }
    session = store.get_model_class().objects.create(
        session_key=get_random_string(32, VALID_KEY_CHARS),
        session_data=store().encode(data),
        expire_date=timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE),
    )
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    return client
