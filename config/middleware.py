"""Project middleware."""

from csp.middleware import CSPMiddleware as BaseCSPMiddleware


class CSPMiddleware(BaseCSPMiddleware):
    """django-csp's middleware, without building policies that no header will carry.

    django-csp builds both policies for every response and only then looks at the exemptions;
    a response exempt from both (a webhook's answer to Twilio) skips that work.
    """

    def process_response(self, request, response):
        if getattr(response, "_csp_exempt", False) and getattr(response, "_csp_exempt_ro", False):
            return response
        return super().process_response(request, response)
