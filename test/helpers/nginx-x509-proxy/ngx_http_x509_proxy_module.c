/*
 * ssl_allow_proxy_certs on;  (server context)
 *
 * Lets OpenSSL accept RFC 3820 proxy certificates as client certificates on this server, as grid
 * storage must: OpenSSL 3's verifier accepts them only when the application sets
 * X509_V_FLAG_ALLOW_PROXY_CERTS (OpenSSL 1.0's OPENSSL_ALLOW_PROXY_CERTS environment variable is
 * no longer read), and nginx has no directive for it. Everything else stays OpenSSL's and nginx's own: the chain is
 * verified against ssl_client_certificate, dates and signatures are checked, and OpenSSL enforces
 * the proxy rules (issuer is the end-entity certificate or a proxy, subject is the issuer's plus
 * one CN). $ssl_client_verify then says SUCCESS for a good proxy.
 */
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

typedef struct {
    ngx_flag_t  allow;
} ngx_http_x509_proxy_srv_conf_t;

static void *ngx_http_x509_proxy_create_srv_conf(ngx_conf_t *cf);
static char *ngx_http_x509_proxy_merge_srv_conf(ngx_conf_t *cf, void *parent, void *child);
static ngx_int_t ngx_http_x509_proxy_init(ngx_conf_t *cf);

static ngx_command_t ngx_http_x509_proxy_commands[] = {
    { ngx_string("ssl_allow_proxy_certs"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_x509_proxy_srv_conf_t, allow),
      NULL },
    ngx_null_command
};

static ngx_http_module_t ngx_http_x509_proxy_module_ctx = {
    NULL,                                   /* preconfiguration */
    ngx_http_x509_proxy_init,               /* postconfiguration: after every server's SSL_CTX exists */
    NULL, NULL,                             /* main conf */
    ngx_http_x509_proxy_create_srv_conf,
    ngx_http_x509_proxy_merge_srv_conf,
    NULL, NULL                              /* location conf */
};

ngx_module_t ngx_http_x509_proxy_module = {
    NGX_MODULE_V1,
    &ngx_http_x509_proxy_module_ctx,
    ngx_http_x509_proxy_commands,
    NGX_HTTP_MODULE,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NGX_MODULE_V1_PADDING
};

static void *
ngx_http_x509_proxy_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_x509_proxy_srv_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_x509_proxy_srv_conf_t));
    if (conf == NULL) {
        return NULL;
    }
    conf->allow = NGX_CONF_UNSET;
    return conf;
}

static char *
ngx_http_x509_proxy_merge_srv_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_x509_proxy_srv_conf_t  *prev = parent;
    ngx_http_x509_proxy_srv_conf_t  *conf = child;

    ngx_conf_merge_value(conf->allow, prev->allow, 0);
    return NGX_CONF_OK;
}

static ngx_int_t
ngx_http_x509_proxy_init(ngx_conf_t *cf)
{
    ngx_uint_t                        i;
    ngx_http_ssl_srv_conf_t          *sscf;
    ngx_http_core_srv_conf_t        **cscfp;
    ngx_http_core_main_conf_t        *cmcf;
    ngx_http_x509_proxy_srv_conf_t   *xcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    cscfp = cmcf->servers.elts;

    for (i = 0; i < cmcf->servers.nelts; i++) {
        xcf = cscfp[i]->ctx->srv_conf[ngx_http_x509_proxy_module.ctx_index];
        if (!xcf->allow) {
            continue;
        }
        sscf = cscfp[i]->ctx->srv_conf[ngx_http_ssl_module.ctx_index];
        if (sscf->ssl.ctx == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "ssl_allow_proxy_certs needs a server with ssl_certificate");
            return NGX_ERROR;
        }
        /* Copied into every SSL_new() of this context, and from there into the verification. */
        if (X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(sscf->ssl.ctx), X509_V_FLAG_ALLOW_PROXY_CERTS) != 1) {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0, "X509_VERIFY_PARAM_set_flags() failed");
            return NGX_ERROR;
        }
    }
    return NGX_OK;
}
