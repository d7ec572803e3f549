# Write an lme4::lmer or nlme::lme fit in bayesmix's REML JSON format (read with
# bayesmix.read_reml). Needs the jsonlite package.
#
#   source("scripts/write_reml_json.R")
#   fit <- lme4::lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy)
#   write_reml_json(fit, "sleepstudy_lmer.json")
#
# One grouping factor only (bayesmix models have two levels). Numbers are written with 15
# significant digits. The format is documented in bayesmix/reml/io.py.

write_reml_json <- function(fit, path, note = NULL) {
  if (inherits(fit, "merMod")) {
    vc <- lme4::VarCorr(fit)
    if (length(vc) != 1) stop("bayesmix reads fits with exactly one grouping factor")
    cluster <- names(vc)[1]
    cov_u <- vc[[1]]
    sd_u <- attr(cov_u, "stddev")
    corr_u <- attr(cov_u, "correlation")
    method <- if (lme4::isREML(fit)) "REML" else "ML"
    criterion <- if (method == "REML") lme4::REMLcrit(fit) else deviance(fit)
    modes <- lme4::ranef(fit, condVar = FALSE)[[1]]
    conv_msgs <- c(fit@optinfo$conv$lme4$messages, fit@optinfo$message[fit@optinfo$conv$opt != 0])
    converged <- length(fit@optinfo$conv$lme4$messages) == 0 && fit@optinfo$conv$opt == 0
    singular <- lme4::isSingular(fit)
    theta <- unname(lme4::getME(fit, "theta"))
    source <- paste0("lme4::lmer (lme4 ", packageVersion("lme4"), ")")
    formula_text <- paste(deparse(formula(fit), width.cutoff = 500L), collapse = " ")
    outcome <- as.character(formula(fit)[[2]])
  } else if (inherits(fit, "lme")) {
    if (length(fit$groups) != 1) stop("bayesmix reads fits with exactly one grouping factor")
    cluster <- names(fit$groups)[1]
    cov_u <- unclass(nlme::getVarCov(fit))
    cov_u <- matrix(cov_u, nrow(cov_u), dimnames = list(rownames(cov_u), colnames(cov_u)))
    sd_u <- sqrt(diag(cov_u))
    corr_u <- if (length(sd_u) > 1) cov2cor(cov_u) else matrix(1, 1, 1)
    method <- fit$method
    criterion <- -2 * as.numeric(logLik(fit))
    modes <- nlme::ranef(fit)
    conv_msgs <- character(0)
    converged <- TRUE  # lme() stops with an error when it does not converge
    singular <- any(sd_u < 1e-4 * fit$sigma)
    theta <- NULL
    source <- paste0("nlme::lme (nlme ", packageVersion("nlme"), ")")
    formula_text <- paste0(
      paste(deparse(formula(fit), width.cutoff = 500L), collapse = " "),
      ", random = ", paste(deparse(fit$call$random, width.cutoff = 500L), collapse = " ")
    )
    outcome <- as.character(formula(fit)[[2]])
  } else {
    stop("write_reml_json() takes an lme4::lmer or nlme::lme fit")
  }
  fe <- lme4::fixef(fit)
  v <- as.matrix(vcov(fit))
  modes <- as.data.frame(modes)
  out <- list(
    format = "bayesmix-reml",
    version = 1L,
    source = source,
    method = method,
    formula = formula_text,
    outcome = outcome,
    cluster = cluster,
    nobs = as.integer(nobs(fit)),
    fixed = lapply(seq_along(fe), function(k) list(
      term = names(fe)[k], estimate = unname(fe[k]), se = unname(sqrt(v[k, k]))
    )),
    vcov = unname(v),
    random = list(
      terms = I(names(sd_u)),
      sd = I(unname(sd_u)),
      corr = unname(corr_u)
    ),
    sigma = sigma(fit),
    criterion = criterion,
    loglik = as.numeric(logLik(fit)),
    theta = theta,
    converged = converged,
    singular = singular,
    messages = I(as.character(conv_msgs)),
    modes = list(
      clusters = I(rownames(modes)),
      terms = I(colnames(modes)),
      values = unname(as.matrix(modes))
    )
  )
  if (!is.null(note)) out$note <- note
  if (!is.null(theta)) out$theta <- I(theta)
  jsonlite::write_json(out, path, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                       na = "null")
  invisible(out)
}
