# Export the data sets of the GLMM (Bernoulli, binomial, Poisson) examples and reference fits
# from R packages to data/*.csv.
#
#   Rscript data/export_glmm_data.R     (from the repository root)
#
# Needs R with lme4 and mlmRev (Debian: apt-get install r-cran-lme4 r-cran-mlmrev). Factors are
# written as their labels (text, quoted); rows stay in the packages' order. Writes
#   data/cbpp.csv            lme4::cbpp (herd, incidence, size, period)
#   data/grouseticks.csv     lme4::grouseticks, all its columns, plus zHEIGHT = (HEIGHT - mean) / SD
#                            (R's scale(), SD with n - 1), so that formulas need no transform
#   data/contraception.csv   mlmRev::Contraception; use and urban (N/Y) as 0/1 (Y = 1), livch as
#                            its labels 0, 1, 2, 3+, age (centred in mlmRev) as it is
#   data/guimmun.csv         mlmRev::guImmun; immun (N/Y) as 0/1 (Y = 1), the other factors as
#                            their labels, pcInd81 as it is
suppressPackageStartupMessages({
  library(lme4)
  library(mlmRev)
})
out <- "data"

as_text <- function(df) {
  for (v in names(df)) if (is.factor(df[[v]])) df[[v]] <- as.character(df[[v]])
  df
}
yes_01 <- function(f) {
  stopifnot(identical(levels(f), c("N", "Y")), !anyNA(f))
  as.integer(f == "Y")
}
write <- function(df, name) write.csv(df, file.path(out, name), row.names = FALSE)

write(as_text(cbpp)[c("herd", "incidence", "size", "period")], "cbpp.csv")

gt <- as_text(grouseticks)
gt$zHEIGHT <- as.numeric(scale(grouseticks$HEIGHT))
write(gt, "grouseticks.csv")

cc <- as_text(Contraception)
cc$use <- yes_01(Contraception$use)
cc$urban <- yes_01(Contraception$urban)
write(cc[c("woman", "district", "use", "livch", "age", "urban")], "contraception.csv")

gi <- as_text(guImmun)
gi$immun <- yes_01(guImmun$immun)
write(gi, "guimmun.csv")
