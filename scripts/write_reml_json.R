# Write an lme4::lmer, lme4::glmer or nlme::lme fit in bayesmix's REML JSON format (read with
# bayesmix.read_reml). Needs the jsonlite package.
#
#   source("scripts/write_reml_json.R")
#   fit <- lme4::lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy)
#   write_reml_json(fit, "sleepstudy_lmer.json")
#   fit <- lme4::glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
#                      family = binomial, data = cbpp)
#   write_reml_json(fit, "cbpp_glmer.json", data = "data/cbpp.csv")
#
# lmer and lme fits: one grouping factor only (bayesmix models have two levels), format version
# 1, documented in bayesmix/reml/io.py. Numbers are written with 15 significant digits.
#
# glmer fits (class glmerMod) are written by write_glmm_json() below, in the layout of format
# version 2 (one "random" entry per random-effects term and one "modes" entry per grouping
# factor, any number of factors; see tests/reference/make_reference_multi.R) with the fields of
# a GLMM added; documented in tests/reference/README.md. Numbers at full precision. The
# arguments data (the CSV the model was fitted to), formula (the formula as written) and refits
# are used for glmer fits only.

write_reml_json <- function(fit, path, note = NULL, data = NULL, formula = NULL, refits = NULL) {
  if (inherits(fit, "glmerMod"))
    return(write_glmm_json(fit, path, data = data, formula = formula, note = note,
                           refits = refits))
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

# ---- glmer fits ----------------------------------------------------------------------------

# The grouping factors written in the formula, as vectors of their parts outer to inner: a/b/c
# gives a, a:b and a:b:c; a:b stays a:b. (As in tests/reference/make_reference_multi.R.)
.rj_written_groups <- function(f) {
  parts <- function(e) {
    if (is.call(e) && identical(e[[1]], as.name(":")))
      return(c(parts(e[[2]]), parts(e[[3]])))
    if (is.call(e) && identical(e[[1]], as.name("("))) return(parts(e[[2]]))
    deparse(e)
  }
  nested <- function(e) {
    if (is.call(e) && identical(e[[1]], as.name("/"))) {
      outer <- nested(e[[2]])
      inner <- parts(e[[3]])
      return(c(outer, list(c(outer[[length(outer)]], inner))))
    }
    list(parts(e))
  }
  walk <- function(e) {
    if (!is.call(e)) return(list())
    op <- as.character(e[[1]])
    if (op %in% c("|", "||")) return(nested(e[[3]]))
    unlist(lapply(as.list(e)[-1], walk), recursive = FALSE)
  }
  walk(f[[length(f)]])
}

# Map lme4's name of a grouping factor ("mom:comm") to the written one, outer to inner
# ("comm:mom"), and the permutation that takes lme4's parts to the written ones.
.rj_group_map <- function(name, written) {
  p <- strsplit(gsub("[()]", "", name), ":", fixed = TRUE)[[1]]
  hits <- Filter(function(w) length(w) == length(p) && setequal(w, p), written)
  if (length(hits) == 0) stop("grouping factor ", name, " is not in the formula")
  w <- hits[[1]]
  list(name = paste(w, collapse = ":"), perm = match(w, p))
}

.rj_reorder_levels <- function(levels, perm) {
  if (length(perm) == 1) return(levels)
  s <- strsplit(levels, ":", fixed = TRUE)
  if (any(lengths(s) != length(perm))) stop("level labels with ':' in an id")
  vapply(s, function(x) paste(x[perm], collapse = ":"), "")
}

# extra: a named list of further fields, written after the others.
write_glmm_json <- function(fit, path, data = NULL, formula = NULL, note = NULL, refits = NULL,
                            extra = NULL) {
  stopifnot(inherits(fit, "glmerMod"))
  f <- if (is.null(formula)) formula(fit) else formula
  written <- .rj_written_groups(f)
  vc <- lme4::VarCorr(fit)
  cnms <- lme4::getME(fit, "cnms")
  flist <- lme4::getME(fit, "flist")
  bars <- lme4::findbars(f)
  bar_group <- vapply(bars, function(b) paste(deparse(b[[3]], width.cutoff = 500L), collapse = ""),
                      "")
  # lme4 (mkReTrms) sorts the terms by their number of levels, decreasing, when any later term
  # has more levels than an earlier one; block is the term's place in the formula.
  nl <- vapply(bar_group, function(g) nlevels(flist[[g]]), 0L)
  ord <- if (any(diff(nl) > 0)) rev(order(nl)) else seq_along(nl)
  stopifnot(identical(unname(bar_group[ord]), names(cnms)), length(vc) == length(ord))
  random <- lapply(seq_along(vc), function(k) {
    g <- .rj_group_map(names(cnms)[k], written)
    cov_u <- vc[[k]]
    list(group = g$name, lme4_group = names(cnms)[k], block = ord[k],
         nlevels = nlevels(flist[[names(cnms)[k]]]),
         terms = I(colnames(cov_u)), sd = I(unname(attr(cov_u, "stddev"))),
         corr = unname(matrix(attr(cov_u, "correlation"), nrow(cov_u))))
  })
  re <- lme4::ranef(fit, condVar = TRUE)
  modes <- lapply(names(re), function(nm) {
    g <- .rj_group_map(nm, written)
    m <- as.matrix(re[[nm]])
    pv <- attr(re[[nm]], "postVar")    # q x q x levels
    cond_sd <- if (is.null(pv)) NULL else
      matrix(sqrt(apply(pv, 3, diag)), nrow = nrow(m), byrow = ncol(m) > 1)
    list(group = g$name, lme4_group = nm,
         levels = I(.rj_reorder_levels(rownames(re[[nm]]), g$perm)),
         terms = I(colnames(m)), values = unname(m), cond_sd = unname(cond_sd))
  })
  lme4_msgs <- as.character(fit@optinfo$conv$lme4$messages)
  opt_msgs <- if (fit@optinfo$conv$opt != 0) as.character(fit@optinfo$message) else character(0)
  singular_msg <- grepl("singular", lme4_msgs, fixed = TRUE)
  fam <- stats::family(fit)
  fe <- lme4::fixef(fit)
  v <- as.matrix(vcov(fit))
  v_rx <- as.matrix(suppressWarnings(vcov(fit, use.hessian = FALSE)))
  ll <- logLik(fit)
  # For nAGQ > 1, lme4 (1.1-31) computes the deviance from the family's deviance residuals, so
  # its logLik, AIC and BIC are relative to the saturated model (mu = y); for nAGQ = 1 they are
  # the full log-likelihood, constants (log choose(n, k), -log y!) included. loglik_saturated
  # (from the family's aic() at mu = y; 0 for Bernoulli) puts both on the full scale.
  rsp <- fit@resp
  loglik_sat <- -0.5 * rsp$family$aic(rsp$y, rsp$n, rsp$y, rsp$weights, 0)
  nagq <- as.integer(fit@devcomp$dims[["nAGQ"]])
  crit_full <- -2 * as.numeric(ll) - if (nagq > 1L) 2 * loglik_sat else 0
  lhs <- paste(deparse(f[[2]], width.cutoff = 500L), collapse = " ")
  out <- list(
    format = "bayesmix-reml",
    version = 2L,
    source = paste0("lme4::glmer (lme4 ", packageVersion("lme4"), ")"),
    method = "ML",
    family = fam$family,
    link = fam$link,
    nAGQ = nagq,
    formula = paste(deparse(f, width.cutoff = 500L), collapse = " "),
    outcome = lhs,
    nobs = as.integer(nobs(fit)),
    fixed = lapply(seq_along(fe), function(k) list(
      term = names(fe)[k], estimate = unname(fe[k]), se = unname(sqrt(v[k, k]))
    )),
    vcov = unname(v),
    vcov_rx = unname(v_rx),
    random = random,
    sigma = NULL,
    criterion = -2 * as.numeric(ll),
    deviance = deviance(fit),
    logLik = as.numeric(ll),
    loglik = as.numeric(ll),
    loglik_saturated = loglik_sat,
    criterion_full = crit_full,
    AIC = AIC(fit),
    BIC = BIC(fit),
    df = as.integer(attr(ll, "df")),
    theta = I(unname(lme4::getME(fit, "theta"))),
    converged = fit@optinfo$conv$opt == 0 && all(singular_msg),
    singular = lme4::isSingular(fit),
    messages = I(c(opt_msgs, lme4_msgs)),
    optimizer = I(as.character(fit@optinfo$optimizer)),
    modes = modes,
    data = data,
    refits = refits
  )
  if (!is.null(note)) out$note <- note
  for (k in names(extra)) out[[k]] <- extra[[k]]
  jsonlite::write_json(out, path, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                       na = "null")
  invisible(out)
}
