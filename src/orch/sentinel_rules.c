/* orch sentinel rules: one PCRE2 pattern per shape of secret or personal data.
 *
 * Written for this project from the providers' published token formats. Each pattern
 * captures the value (vgroup) so that only the value is replaced, never the key name
 * around it. Patterns are deliberately strict about length and alphabet; what a pattern
 * cannot express (checksums, entropy, documented examples, private ranges) is done by the
 * check named in the row (sentinel.c). Priorities: provider formats 0, structured
 * credentials 1, checksummed personal data 2, assignments 3, entropy 4, other personal data 5-6.
 */
#include "orch/sentinel.h"
#include "orch/sentinel_internal.h"

/* Left and right boundaries: the token is not part of a longer word. */
#define LB "(?<![A-Za-z0-9_])"
#define RB "(?![A-Za-z0-9_])"
#define LBD "(?<![A-Za-z0-9_-])"
#define RBD "(?![A-Za-z0-9_-])"
/* Optional "key name" glue between a keyword and its value: quotes, spaces, = : => := */
#define GLUE "[\"'`]?[ \\t]*(?::=|=>|==?|:)?[ \\t]*[\"'`]?"

const orch_rule orch_rules[] = {
    /* ---------------------------------------------------------- provider formats */
    {"aws-access-key-id", ORCH_K_AWS_KEY, 0, ORCH_CHK_TOKEN, 1,
     LB "((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})" RB},
    {"aws-secret-access-key", ORCH_K_AWS_SECRET, 0, ORCH_CHK_SECRET40, 1,
     "(?i:aws)[A-Za-z0-9_. -]{0,24}?(?i:secret|sk)[A-Za-z0-9_. -]{0,24}?" GLUE
     "([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"},
    {"github-token", ORCH_K_GITHUB_TOKEN, 0, ORCH_CHK_TOKEN, 1, LB "(gh[pousr]_[A-Za-z0-9]{36,251})" RB},
    {"github-fine-grained-pat", ORCH_K_GITHUB_PAT, 0, ORCH_CHK_TOKEN, 1,
     LB "(github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})" RB},
    {"gitlab-token", ORCH_K_GITLAB_TOKEN, 0, ORCH_CHK_TOKEN, 1,
     LBD "((?:glpat|gldt|glrt|glptt|glft|glsoat|glimt|gloas)-[A-Za-z0-9_-]{20,64})" RBD},
    {"slack-token", ORCH_K_SLACK_TOKEN, 0, ORCH_CHK_TOKEN, 1,
     LBD "(xox[abposr]-(?:[0-9]{6,14}-){1,3}[A-Za-z0-9]{20,48})" RBD},
    {"slack-app-token", ORCH_K_SLACK_TOKEN, 0, ORCH_CHK_TOKEN, 1,
     LBD "(xapp-[0-9]-[A-Z0-9]{8,14}-[0-9]{8,14}-[a-f0-9]{32,64})" RBD},
    {"slack-webhook", ORCH_K_SLACK_WEBHOOK, 0, ORCH_CHK_TOKEN, 1,
     "(https://hooks\\.slack\\.com/(?:services|workflows|triggers)/[A-Za-z0-9_+/-]{20,140})"
     "(?![A-Za-z0-9_+/-])"},
    {"stripe-key", ORCH_K_STRIPE_KEY, 0, ORCH_CHK_TOKEN, 1,
     LB "((?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,99}|whsec_[A-Za-z0-9]{32,64})" RB},
    {"openai-key-marked", ORCH_K_OPENAI_KEY, 0, ORCH_CHK_TOKEN, 1,
     LBD "(sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{10,200}T3BlbkFJ[A-Za-z0-9_-]{10,200})" RBD},
    {"openai-key-project", ORCH_K_OPENAI_KEY, 0, ORCH_CHK_TOKEN, 1,
     LBD "(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,200})" RBD},
    {"openai-key-legacy", ORCH_K_OPENAI_KEY, 0, ORCH_CHK_TOKEN, 1, LBD "(sk-[A-Za-z0-9]{48})" RBD},
    {"anthropic-key", ORCH_K_ANTHROPIC_KEY, 0, ORCH_CHK_TOKEN, 1,
     LBD "(sk-ant-(?:api|admin|sid|oat)[0-9]{2}-[A-Za-z0-9_-]{32,120})" RBD},
    {"google-api-key", ORCH_K_GOOGLE_KEY, 0, ORCH_CHK_TOKEN, 1, LBD "(AIza[0-9A-Za-z_-]{35})" RBD},
    {"google-oauth-secret", ORCH_K_GOOGLE_KEY, 0, ORCH_CHK_TOKEN, 1, LBD "(GOCSPX-[0-9A-Za-z_-]{28})" RBD},
    {"azure-account-key", ORCH_K_AZURE_KEY, 0, ORCH_CHK_SECRET40, 1,
     "(?i:AccountKey|SharedAccessKey|PrimaryKey|SecondaryKey)=([A-Za-z0-9+/]{42,88}={0,2})"
     "(?![A-Za-z0-9+/=])"},
    {"azure-client-secret", ORCH_K_AZURE_KEY, 0, ORCH_CHK_TOKEN, 1,
     "(?<![A-Za-z0-9_~.-])([A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34})(?![A-Za-z0-9_~.-])"},
    {"twilio-api-key", ORCH_K_TWILIO_KEY, 0, ORCH_CHK_TOKEN, 1, LB "(SK[0-9a-fA-F]{32})" RB},
    {"sendgrid-key", ORCH_K_SENDGRID_KEY, 0, ORCH_CHK_TOKEN, 1,
     LBD "(SG\\.[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43})" RBD},
    {"npm-token", ORCH_K_NPM_TOKEN, 0, ORCH_CHK_TOKEN, 1, LB "(npm_[A-Za-z0-9]{36})" RB},
    {"pypi-token", ORCH_K_PYPI_TOKEN, 0, ORCH_CHK_TOKEN, 1,
     LBD "(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,300})" RBD},
    {"huggingface-token", ORCH_K_HF_TOKEN, 0, ORCH_CHK_TOKEN, 1, LB "((?:hf|api_org)_[A-Za-z0-9]{34,40})" RB},
    {"discord-bot-token", ORCH_K_DISCORD_TOKEN, 0, ORCH_CHK_TOKEN, 1,
     "(?<![A-Za-z0-9_.-])([MNO][A-Za-z0-9_-]{23,27}\\.[A-Za-z0-9_-]{6}\\.[A-Za-z0-9_-]{27,40})"
     "(?![A-Za-z0-9_.-])"},
    {"discord-webhook", ORCH_K_DISCORD_TOKEN, 0, ORCH_CHK_TOKEN, 1,
     "(https://(?:ptb\\.|canary\\.)?discord(?:app)?\\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68})"
     RBD},
    {"telegram-bot-token", ORCH_K_TELEGRAM_TOKEN, 0, ORCH_CHK_TOKEN, 1,
     "(?:(?<=bot)|(?<![A-Za-z0-9_:]))([0-9]{8,10}:AA[A-Za-z0-9_-]{33})" RBD},
    {"mailgun-key", ORCH_K_MAILGUN_KEY, 0, ORCH_CHK_TOKEN, 1, LBD "(key-[0-9a-f]{32})" RBD},
    {"digitalocean-token", ORCH_K_DO_TOKEN, 0, ORCH_CHK_TOKEN, 1, LB "(do[opr]_v1_[a-f0-9]{64})" RB},
    {"heroku-key-new", ORCH_K_HEROKU_KEY, 0, ORCH_CHK_TOKEN, 1, LBD "(HRKU-[A-Za-z0-9_-]{60})" RBD},
    {"heroku-key-uuid", ORCH_K_HEROKU_KEY, 1, ORCH_CHK_TOKEN, 1,
     "(?i:heroku)[A-Za-z0-9_. -]{0,30}?" GLUE
     "([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})" RBD},
    {"shopify-token", ORCH_K_SHOPIFY_TOKEN, 0, ORCH_CHK_TOKEN, 1, LB "(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})" RB},

    /* ------------------------------------------------------- structured credentials */
    {"private-key-block", ORCH_K_PRIVATE_KEY, 0, ORCH_CHK_PEM, 1,
     "(-----BEGIN[ A-Z0-9]{0,30} PRIVATE KEY(?: BLOCK)?-----[\\s\\S]*?"
     "(?:-----END[ A-Z0-9]{0,30} PRIVATE KEY(?: BLOCK)?-----|\\z))"},
    {"jwt", ORCH_K_JWT, 1, ORCH_CHK_TOKEN, 1,
     "(?<![A-Za-z0-9_.-])(eyJ[A-Za-z0-9_-]{8,}\\.eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{16,})(?![A-Za-z0-9_.-])"},
    {"db-url-password", ORCH_K_CONN_STRING, 1, ORCH_CHK_URLPASS, 1,
     "(?i)(?<![A-Za-z0-9+.-])(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\\+srv)?|rediss?|amqps?|"
     "mssql|sqlserver|cockroachdb|clickhouse|couchdb|neo4j|jdbc:[a-z0-9]+)://"
     "[^\\s:@/?#\"'`]{0,128}:([^\\s@/?#\"'`]{1,256})@[A-Za-z0-9._-]"},
    {"ado-connection-password", ORCH_K_CONN_STRING, 1, ORCH_CHK_URLPASS, 1,
     "(?i)(?:Server|Data Source|Host|Address|Addr)[ \\t]*=[^;\"'\\n]{1,120};(?:[^;\"'\\n]{0,120};){0,10}?"
     "[ \\t]*(?:Password|Pwd)[ \\t]*=[ \\t]*([^;\"'\\s]{1,128})"},
    {"url-credentials", ORCH_K_URL_CREDS, 1, ORCH_CHK_URLPASS, 1,
     "(?i)(?<![A-Za-z0-9+.-])(?:https?|ftps?|sftp|ssh|git|smtps?|imaps?|ldaps?|wss?|svn)://"
     "[^\\s:@/?#\"'`]{1,128}:([^\\s@/?#\"'`]{1,256})@[A-Za-z0-9._-]"},

    /* ------------------------------------------------------- checksummed personal data */
    {"card-number", ORCH_K_CARD, 2, ORCH_CHK_CARD, 1,
     "(?<![0-9A-Za-z_.,-])((?:[0-9][ -]?){12,18}[0-9])(?![0-9A-Za-z_-])(?![.,][0-9])"},
    {"iban", ORCH_K_IBAN, 2, ORCH_CHK_IBAN, 1,
     "(?<![A-Za-z0-9])([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)(?![A-Za-z0-9])"},

    /* ------------------------------------------------------- assignments and entropy */
    /* An identifier that contains a secret stem, glue, then a quoted or bare value. The check
     * splits the identifier into words and keeps it only when it ends like a secret name
     * (db_password, apiKey, SECRET_KEY; not password_hint, token_count, secret_santa). */
    {"secret-assignment", ORCH_K_GENERIC_SECRET, 3, ORCH_CHK_ASSIGN, 2,
     "(?<![A-Za-z0-9_.-])((?=[A-Za-z0-9_.-]{0,60}?(?i:pass|pwd|pw|secret|token|key|credential|auth))"
     "[A-Za-z_][A-Za-z0-9_.-]{0,60})[\"'`]?[ \\t]*(?:\\][ \\t]*)?"
     "(?::[ \\t]*[A-Za-z_][A-Za-z0-9_\\[\\]. |]{0,40}?[ \\t]*=|:=|=>|==?|:|[ \\t]+(?:is|was)[ \\t]*:?)[ \\t]*"
     "(?:\"([^\"\\\\\\n]{1,300})\"|'([^'\\\\\\n]{1,300})'|`([^`\\n]{1,300})`|([^\\s\"'`,;&)}\\]]{1,300}))"},
    {"high-entropy-near-keyword", ORCH_K_GENERIC_SECRET, 4, ORCH_CHK_ENTROPY, 1,
     "(?i:(?<![A-Za-z])(?:api[_ -]?key|apikey|access[_ -]?key|token|secret|password|passwd|"
     "credentials?|bearer|authorization|auth|private[_ -]?key)s?(?![a-z]))[^\\n]{0,30}?"
     "(?<![A-Za-z0-9+/_=.~-])([A-Za-z0-9+/_=.~-]{12,256})(?![A-Za-z0-9+/_=.~-])"},

    /* ------------------------------------------------------------- personal data */
    {"email", ORCH_K_EMAIL, 5, ORCH_CHK_EMAIL, 1,
     "(?<![A-Za-z0-9._%+-])([A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
     "[A-Za-z0-9])?\\.)+[A-Za-z]{2,24})(?![A-Za-z0-9-])"},
    {"phone-international", ORCH_K_PHONE, 6, ORCH_CHK_PHONE_INTL, 1,
     "(?<![A-Za-z0-9+_/.=-])(\\+[1-9][0-9]{0,2}(?:[ .-]?\\(?[0-9]{1,5}\\)?){1,6})"
     "(?![0-9A-Za-z_/-])(?![.][0-9])"},
    {"phone-nanp", ORCH_K_PHONE, 6, ORCH_CHK_PHONE_NANP, 1,
     "(?<![A-Za-z0-9+_/.=-])((?:\\([0-9]{3}\\)[ .-]?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4})"
     "(?![0-9A-Za-z_/-])(?![.][0-9])"},
    {"phone-near-keyword", ORCH_K_PHONE, 6, ORCH_CHK_PHONE_KW, 1,
     "(?<![A-Za-z])(?i:phone|tel|telephone|mobile|cell|call me|fax|whatsapp|handy|telefon)[^\\n0-9+]{0,12}"
     "((?:\\(0[0-9]{1,4}\\)|0[0-9]{1,4})(?:[ .-]?[0-9]{2,8}){1,4})(?![0-9A-Za-z_/-])(?![.][0-9])"},
    {"ipv4", ORCH_K_IP, 6, ORCH_CHK_IPV4, 1,
     "(?<![0-9A-Za-z_.:-])((?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
     "(?:\\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3})(?![0-9A-Za-z_-])(?![.][0-9])"},
    {"ipv6", ORCH_K_IPV6, 6, ORCH_CHK_IPV6, 1,
     "(?<![0-9A-Za-z_:.-])((?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:\\.[0-9]{1,3}){0,3})"
     "(?![0-9A-Za-z_:-])"},
};
const size_t orch_n_rules = sizeof orch_rules / sizeof orch_rules[0];
