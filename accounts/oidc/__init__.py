"""Identity providers (Azure AD, Cognito, any OpenID Connect issuer): their signing keys
(``keys``), token validation (``tokens``), what a token's claims say about its user
(``identity``), the API's bearer-token authentication (``authentication``) and the admin's
sign-in (``signin``). The providers themselves are settings (``config.identity_providers``).
"""
